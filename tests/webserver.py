"""A real web server for the tests: nginx serving a folder on a free loopback port, started
and stopped by the test (its access log tells what was asked for and sent)."""

import contextlib
import os
import socket
import subprocess
import sys
import time

CONFIG = """daemon off;
master_process off;
user root;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    log_format bytes '$request_method $uri $status $body_bytes_sent "$http_range"';
    access_log {run}/access.log bytes;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    keepalive_requests 100000;
    server {{
        listen {host}:{port};
        root {root};
        {extra}
    }}
}}
"""


def free_port(host="127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Nginx:
    def __init__(self, root, run_dir, host="127.0.0.1", port=None, extra="", netns=None):
        self.root, self.run, self.host = str(root), str(run_dir), host
        self.port = port or free_port(host)
        self.extra, self.netns = extra, netns
        self.proc = None
        os.makedirs(self.run, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self):
        conf = os.path.join(self.run, "nginx.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(run=self.run, host=self.host, port=self.port, root=self.root,
                                  extra=self.extra))
        cmd = ["nginx", "-c", conf, "-p", self.run]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):
            if self._listening():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx did not start: {self.proc.stderr.read().decode()}")
            time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def _listening(self) -> bool:
        if self.netns is None:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.1):
                return True
            return False
        probe = f"import socket; socket.create_connection(('{self.host}', {self.port}), 0.1)"
        return subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", probe],
                              capture_output=True).returncode == 0

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> list[tuple[str, str, int, int, str]]:
        """(method, uri, status, body bytes sent, range asked) of each request so far."""
        rows = []
        with contextlib.suppress(FileNotFoundError), open(os.path.join(self.run, "access.log")) as f:
            for line in f:
                method, uri, status, sent, rng = line.rstrip("\n").split(" ", 4)
                rows.append((method, uri, int(status), int(sent), rng.strip('"')))
        return rows

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

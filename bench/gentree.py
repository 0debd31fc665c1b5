#!/usr/bin/env python3
"""Deterministic generator of a large Windows-like directory tree.

Used by the benchmarks (bench_scan.py) and handy for manual testing:

    python bench/gentree.py ROOT --entries 100000 [--seed N] [--bytes 2.9G]
    python bench/gentree.py ROOT --mutate 0.03 [--seed N]

The same (entries, seed, total_bytes) always yields the same names, sizes,
modes, mtimes and content. Standard library only.

Shape: Windows/WinSxS component folders whose binaries are hardlinked into
Windows/System32 and SysWOW64, Program Files / Program Files (x86) vendor
trees, Users/<name>/AppData caches, Documents with non-ASCII and very long
names, some empty folders, many small files with a skewed size distribution
and a few large files (pagefile.sys, .msi, .cab). Roughly 85 % files and
15 % directories.
"""

import argparse
import json
import os
import random
import re
import shutil
import stat
import sys
import time

AVG_BYTES_PER_ENTRY = 29_000     # 100k entries -> ~2.9 GB
DIR_FRACTION = 0.15
HARDLINK_FRACTION = 0.06         # of all files: System32/SysWOW64 links into WinSxS
EMPTY_DIR_FRACTION = 0.06        # of grown dirs: folders that get no files
LONG_NAME_PROB = 0.03
MAX_NAME_BYTES = 200
MAX_PATH_BYTES = 900             # keeps us far from PATH_MAX whatever the root
BUF_SIZE = 64 << 20              # shared random content; large so slices rarely overlap
NTFS_TICK = 100                  # NTFS stores times in 100 ns units

# --- name material ---------------------------------------------------------

VENDORS = [
    "Microsoft", "Microsoft Office", "Adobe", "Google", "Mozilla Firefox", "NVIDIA Corporation",
    "Intel", "Realtek", "Oracle", "JetBrains", "Valve", "Logitech", "Zoom", "7-Zip",
    "Notepad++", "Git", "Python311", "VideoLAN", "Common Files", "Windows Defender",
    "Windows NT", "Internet Explorer", "Dell", "HP", "Lenovo", "AMD", "Docker",
    "Société Générale Logiciels", "Müller Software GmbH", "Ñandú Labs", "北京软件有限公司",
    "Åsa Verktyg AB", "Dropbox", "Spotify", "WinRAR", "Steam", "Epic Games",
]
PRODUCTS = [
    "Product", "Reader", "Studio", "Toolkit", "Runtime", "Client", "Player", "Suite",
    "Acrobat DC", "Chrome", "Edge", "Office16", "IntelliJ IDEA", "PyCharm Community Edition",
    "GeForce Experience", "Audio Driver", "Management Engine", "Photoshop", "Tools",
    "Visionneuse d'images", "Bürosoftware", "Herramientas", "工具箱",
]
PROG_SUBDIRS = [
    "bin", "lib", "plugins", "resources", "locales", "share", "data", "x64", "x86",
    "platforms", "imageformats", "translations", "Extensions", "modules", "node_modules",
    "help", "en-US", "de-DE", "fr-FR", "ja-JP", "zh-CN", "es-ES", "pt-BR", "ru-RU",
    "assets", "icons", "themes", "templates", "redist", "drivers", "config", "Licenses",
    "site-packages", "dist", "app", "Setup", "Uninstall", "DLLs", "Scripts", "include",
]
APPDATA_SUBDIRS = [
    "Cache", "Cache_Data", "Code Cache", "js", "wasm", "GPUCache", "IndexedDB", "Local Storage",
    "leveldb", "Session Storage", "User Data", "Default", "Profile 1", "Crashpad", "reports",
    "logs", "Temp", "Packages", "LocalState", "RoamingState", "Settings", "Microsoft",
    "Windows", "INetCache", "IE", "Explorer", "Caches", "CrashDumps", "History", "Extensions",
    "Service Worker", "CacheStorage", "blob_storage", "databases", "shared_proto_db",
]
WINDOWS_SUBDIRS = [
    "Logs", "servicing", "Packages", "assembly", "NativeImages_v4.0.30319_64", "Microsoft.NET",
    "Framework64", "v4.0.30319", "Globalization", "IME", "INF", "Media", "Prefetch",
    "Resources", "Themes", "ShellExperiences", "SystemApps", "Help", "Cursors", "Boot",
    "PolicyDefinitions", "en-US", "de-DE", "WaaS", "CbsTemp", "diagnostics", "Web",
]
DOC_WORDS = [
    "Rapport", "réunion", "Überblick", "Präsentation", "niño", "año", "mañana", "café",
    "naïve", "résumé", "Straße", "Größe", "Ærø", "crème brûlée", "façade", "jalapeño",
    "中文", "文档", "会议记录", "照片", "東京", "日本語", "한국어", "Привет", "отчёт",
    "Ελληνικά", "🎉", "📷", "😀", "🚀", "🏖️", "Budget", "Invoice", "Notes", "Vacation",
    "Photo", "Scan", "Draft", "Final", "final (2)", "Copy of", "Project", "Meeting",
    "Taxes", "Receipts", "Resume", "Letter", "Contract", "Thesis", "Backup", "old",
]
DOC_DIRS = [
    "Projets", "Fotos 2019", "Reisen", "Año nuevo", "Überweisungen", "中文资料", "家庭照片",
    "🎉 Party", "Rechnungen 2023", "My Music", "Camera Roll", "Screenshots", "Work",
    "Taxes 2022", "Saved Pictures", "Visual Studio 2022", "Zoom", "OneNote Notebooks",
    "Custom Office Templates", "WindowsPowerShell", "Steuererklärung", "Vacances d'été",
]
DOC_EXTS = ["docx", "xlsx", "pdf", "jpg", "JPG", "png", "mp3", "mp4", "txt", "pptx",
            "zip", "odt", "csv", "heic", "lnk", "url", "ini"]
SYLLABLES = [
    "win", "ms", "core", "net", "sys", "api", "d3d", "dx", "svc", "cfg", "mgr", "ui", "shell",
    "crypt", "sec", "wmi", "usb", "hid", "bth", "print", "font", "media", "audio", "video",
    "gdi", "user", "kernel", "ole", "com", "rpc", "dns", "tcp", "ip", "http", "sql", "xml",
    "storage", "search", "update", "setup", "policy", "power", "input", "sens", "cert",
]
COMPONENT_PARTS = [
    "audio", "shell", "networking", "security", "kernel", "font", "media", "bluetooth",
    "printing", "graphics", "directx", "ie", "netfx4", "wmi", "storage", "usb", "setup",
    "update", "smartcard", "speech", "tcpip", "winlogon", "mpssvc", "defender", "hyper-v",
    "shell32", "d3d10", "mmecore", "comdlg32", "gdiplus", "photos", "search", "cortana",
]
COMPONENT_SUFFIXES = ["core", "svc", "client", "runtime", "adm", "events", "lib", "ui",
                      "host", "provider", "other", "deployment", "onecore", "common"]
SYS_EXTS = ["dll"] * 6 + ["exe", "sys", "mui", "cat", "inf", "manifest", "tlb", "cpl"]
PROG_EXTS = ["dll"] * 4 + ["exe", "json", "xml", "pak", "dat", "png", "ico", "txt", "html",
                           "js", "pyd", "py", "cfg", "ini", "manifest", "qm", "mo", "bin"]
LARGE_FILES = [  # (parent dir, name): Windows-typical big files
    ("", "pagefile.sys"), ("", "hiberfil.sys"), ("", "swapfile.sys"),
    ("Windows/Installer", "{hex}.msi"), ("Windows/SoftwareDistribution/Download", "{hex}.cab"),
    ("Windows/Installer", "{hex}.msp"), ("ProgramData/Package Cache", "vc_redist.x64.{hex}.exe"),
    ("Windows/SoftwareDistribution/Download", "windows10.0-kb{num}-x64.cab"),
    ("Windows/Logs/CBS", "CbsPersist_{num}.cab"), ("Windows/System32/config", "SOFTWARE"),
    ("Windows/Installer", "{hex}.msi"), ("ProgramData/Microsoft/Search/Data", "Windows.edb"),
]
USER_NAMES = ["José Müller", "Administrator", "李明", "Zoë", "user", "Ørjan Ødegård"]
USER_SUBDIRS = ["AppData", "AppData/Local", "AppData/Local/Temp", "AppData/LocalLow",
                "AppData/Roaming", "Documents", "Downloads", "Desktop", "Pictures", "Music",
                "Videos", "Favorites"]
SKELETON = [
    "Windows", "Windows/System32", "Windows/System32/drivers", "Windows/System32/config",
    "Windows/System32/DriverStore", "Windows/System32/DriverStore/FileRepository",
    "Windows/SysWOW64", "Windows/WinSxS", "Windows/Fonts", "Windows/Temp", "Windows/Installer",
    "Windows/SoftwareDistribution", "Windows/SoftwareDistribution/Download", "Windows/Logs",
    "Windows/Logs/CBS", "Program Files", "Program Files (x86)", "ProgramData",
    "ProgramData/Package Cache", "ProgramData/Microsoft", "ProgramData/Microsoft/Search",
    "ProgramData/Microsoft/Search/Data", "Users", "Users/Public", "Users/Public/Documents",
    "Users/Default", "$Recycle.Bin", "PerfLogs",
]
# growth areas: (name, weight, parents new top-level dirs go under)
AREAS = [
    ("winsxs", 0.22, ["Windows/WinSxS"]),
    ("driverstore", 0.03, ["Windows/System32/DriverStore/FileRepository"]),
    ("prog", 0.25, ["Program Files", "Program Files (x86)"]),
    ("appdata", 0.22, ["AppData/Local", "AppData/Roaming", "AppData/LocalLow"]),  # per user
    ("docs", 0.15, ["Documents", "Pictures", "Downloads", "Desktop", "Music"]),  # per user
    ("programdata", 0.06, ["ProgramData"]),
    ("windows", 0.07, ["Windows"]),
]


# --- helpers ---------------------------------------------------------------

def parse_bytes(text):
    """'2.9G' -> 2900000000. Decimal K/M/G/T; KiB/MiB/GiB/TiB are binary."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?)B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size: {text!r}")
    num, unit, binary = m.groups()
    base = 1024 if binary else 1000
    return int(float(num) * base ** " KMGT".index(unit.upper() or " "))


def hexid(rng, n=16):
    return "%0*x" % (n, rng.getrandbits(4 * n))


def guid(rng):
    h = hexid(rng, 32).upper()
    return "{{{}-{}-{}-{}-{}}}".format(h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def clip_utf8(name, limit):
    """Cut a name to at most `limit` UTF-8 bytes without splitting a character."""
    raw = name.encode()[:limit]
    return raw.decode("utf-8", "ignore").rstrip(" .") or "x"


def long_name(rng, ext=None):
    """A long human-ish name of roughly 100-200 UTF-8 bytes."""
    target = rng.randint(100, MAX_NAME_BYTES)
    suffix = "." + ext if ext else ""
    words = []
    while len(" ".join(words).encode()) < target:
        words.append(rng.choice(DOC_WORDS))
    return clip_utf8(" ".join(words), target - len(suffix.encode())) + suffix


def stem(rng):
    s = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
    r = rng.random()
    if r < 0.2:
        s += str(rng.randint(2, 140))
    elif r < 0.3:
        s = "api-ms-win-%s-%s-l1-%d-%d" % (rng.choice(SYLLABLES), rng.choice(SYLLABLES),
                                           rng.randint(1, 3), rng.randint(0, 2))
    elif r < 0.4:
        s = "{}.{}".format(rng.choice(["Windows", "Microsoft", "System"]), s.capitalize())
    return s


def dir_name(rng, area, rel_depth):
    """Name of a new directory `rel_depth` levels below its area's top."""
    if area == "winsxs":
        arch = rng.choice(["amd64", "amd64", "amd64", "wow64", "x86", "msil"])
        comp = "-".join(rng.sample(COMPONENT_PARTS, rng.randint(1, 3)))
        comp += "-" + rng.choice(COMPONENT_SUFFIXES)
        lang = rng.choice(["none"] * 6 + ["en-us", "de-de", "fr-fr"])
        return "%s_microsoft-windows-%s_31bf3856ad364e35_10.0.19041.%d_%s_%s" % (
            arch, comp, rng.choice([1, 1, 1, 546, 1202, 1889, 3636]), lang, hexid(rng))
    if area == "driverstore" and rel_depth == 1:
        return "{}.inf_amd64_{}".format(stem(rng), hexid(rng))
    if rng.random() < LONG_NAME_PROB and area in ("docs", "appdata", "prog", "programdata"):
        return long_name(rng)
    if area in ("prog", "programdata", "appdata") and rel_depth == 1:
        return rng.choice(VENDORS)
    if area in ("prog", "appdata") and rel_depth == 2:
        return "%s %d.%d" % (rng.choice(PRODUCTS), rng.randint(1, 30), rng.randint(0, 9))
    if area == "prog":
        return rng.choice(PROG_SUBDIRS)
    if area in ("appdata", "programdata"):
        r = rng.random()
        if r < 0.15:
            return guid(rng)
        if r < 0.3:
            return hexid(rng, rng.choice([8, 16, 32]))
        return rng.choice(APPDATA_SUBDIRS)
    if area == "docs":
        r = rng.random()
        if r < 0.5:
            return rng.choice(DOC_DIRS)
        return " ".join(rng.choice(DOC_WORDS) for _ in range(rng.randint(1, 3)))
    return rng.choice(WINDOWS_SUBDIRS)


def file_name(rng, area):
    if rng.random() < LONG_NAME_PROB and area in ("docs", "appdata", "prog"):
        return long_name(rng, rng.choice(DOC_EXTS))
    if area in ("winsxs", "driverstore", "system"):
        return "{}.{}".format(stem(rng), rng.choice(SYS_EXTS))
    if area == "prog":
        return "{}.{}".format(stem(rng), rng.choice(PROG_EXTS))
    if area in ("appdata", "programdata"):
        r = rng.random()
        if r < 0.35:
            return "f_{:06x}".format(rng.getrandbits(24))
        if r < 0.5:
            return "{}_0".format(hexid(rng))
        if r < 0.6:
            return "data_%d" % rng.randint(0, 3)
        if r < 0.7:
            return "%06d.%s" % (rng.randint(1, 999999), rng.choice(["log", "ldb"]))
        if r < 0.75:
            return rng.choice(["LOCK", "CURRENT", "LOG", "LOG.old", "MANIFEST-000001",
                               "Cookies", "History", "Preferences", "index"])
        if r < 0.85:
            return guid(rng) + ".tmp"
        return "{}.{}".format(stem(rng), rng.choice(["json", "db", "sqlite", "xml", "dat", "etl"]))
    if area == "docs":
        words = " ".join(rng.choice(DOC_WORDS) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.3:
            words += " %d" % rng.randint(1999, 2024)
        return "{}.{}".format(words, rng.choice(DOC_EXTS))
    return "{}.{}".format(stem(rng), rng.choice(["log", "xml", "dat", "etl", "ini", "txt", "mum"]))


def small_size(rng):
    """Skewed size: most files 0.5-64 KiB, a few empty or tiny, ~1% 64 KiB-4 MiB."""
    r = rng.random()
    if r < 0.02:
        return 0
    if r < 0.04:
        return rng.randint(1, 511)
    if r < 0.99:
        # log-normal around 6 KiB, clamped to 0.5-64 KiB
        return int(min(max(rng.lognormvariate(8.7, 1.2), 512), 65536))
    return int(2 ** rng.uniform(16, 22))


def random_mtime_ns(rng, lo_year=2016, hi_year=2024):
    lo = (lo_year - 1970) * 31_556_952 * 10**9
    hi = (hi_year - 1970) * 31_556_952 * 10**9
    t = rng.randrange(lo, hi)
    # NTFS keeps 100 ns ticks; keep a few arbitrary-ns times as edge cases
    return t if rng.random() < 0.1 else t - t % NTFS_TICK


def file_mode(rng, name):
    r = rng.random()
    if r < 0.03:
        return 0o444  # read-only attribute
    if r < 0.04:
        return 0o600
    if name.endswith((".exe", ".dll", ".sys", ".cpl")):
        return 0o755
    return 0o644


def write_content(fd, size, header, buf, rng):
    """Unique header then slices of the shared random buffer at random offsets."""
    data = header[:size]
    os.write(fd, data)
    left = size - len(data)
    view = memoryview(buf)
    while left > 0:
        n = min(left, 1 << 20, len(buf))
        off = rng.randrange(0, len(buf) - n + 1)
        written = os.write(fd, view[off:off + n])
        left -= written


# --- generate --------------------------------------------------------------

def generate(root, entries, seed=1, total_bytes=None):
    """Create `entries` files and directories below `root` (made if missing,
    must be empty). Returns a dict of counts."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    root = os.fsencode(root)
    if total_bytes is None:
        total_bytes = entries * AVG_BYTES_PER_ENTRY
    os.makedirs(root, exist_ok=True)
    if os.listdir(root):
        raise FileExistsError(f"{os.fsdecode(root)} is not empty")

    n_users = max(1, min(4, entries // 30_000 + 1))
    users = USER_NAMES[:n_users]

    # -- directory plan: list of relative paths (str), parents always first
    dirs, dir_area, depth, names = [], [], [], []  # names: casefolded children per dir
    index = {"": -1}
    root_names = set()

    def add_dir(rel, area):
        parent = rel.rpartition("/")[0]
        index[rel] = len(dirs)
        dirs.append(rel)
        dir_area.append(area)
        depth.append(rel.count("/") + 1)
        names.append(set())
        (names[index[parent]] if parent else root_names).add(rel.rpartition("/")[2].casefold())

    for rel in SKELETON:
        add_dir(rel, "system" if rel.startswith("Windows") else "misc")
    for u in users:
        add_dir("Users/" + u, "misc")
        for sub in USER_SUBDIRS:
            add_dir("Users/{}/{}".format(u, sub), "docs" if "AppData" not in sub else "appdata")
    n_dirs = max(round(entries * DIR_FRACTION), len(dirs))
    n_files = entries - n_dirs
    if n_files < n_dirs:
        raise ValueError(f"entries={entries} too small; need at least {len(dirs) * 2}")

    # each area grows new folders under its top-level parents or its own folders
    area_tops = {}
    for name, _, tops in AREAS:
        if name in ("appdata", "docs"):
            tops = ["Users/{}/{}".format(u, t) for u in users for t in tops]
        area_tops[name] = tops
    pools = {name: [] for name, _, _ in AREAS}
    area_names = [a[0] for a in AREAS]
    area_weights = [a[1] for a in AREAS]
    grown_start = len(dirs)

    while len(dirs) < n_dirs:
        area = rng.choices(area_names, area_weights)[0]
        pool = pools[area]
        if area == "winsxs" or not pool or rng.random() < 0.12:
            parent = rng.choice(area_tops[area])  # flat WinSxS: always top level
        elif rng.random() < 0.5:
            parent = pool[-rng.randint(1, min(len(pool), 30))]  # recent: builds deep chains
        else:
            parent = rng.choice(pool)
        top_depth = min(depth[index[t]] for t in area_tops[area])
        rel_depth = depth[index[parent]] - top_depth + 1
        name = dir_name(rng, area, rel_depth)
        if len(parent.encode()) + len(name.encode()) > MAX_PATH_BYTES:
            continue
        siblings = names[index[parent]]
        base, k = name, 2
        while name.casefold() in siblings:  # Windows is case-insensitive
            name = "%s (%d)" % (base, k)
            k += 1
        rel = parent + "/" + name
        add_dir(rel, area)
        pool.append(rel)

    # -- file plan: (dir index, name, size, mode, mtime_ns); hardlinks separately
    files = []

    def new_file(d, area, size=None, name=None):
        name = name or file_name(rng, area)
        siblings = names[d]
        base, k = name, 2
        while name.casefold() in siblings:
            stem_, dot, ext = base.rpartition(".")
            name = "%s_%d.%s" % (stem_, k, ext) if dot else "%s_%d" % (base, k)
            k += 1
        if len(dirs[d].encode()) + len(name.encode()) > MAX_PATH_BYTES:
            name = clip_utf8(name, 60)
            if name.casefold() in siblings:
                return None
        siblings.add(name.casefold())
        size = small_size(rng) if size is None else size
        files.append([d, name, size, file_mode(rng, name), None])
        return files[-1]

    # Windows build timestamps: many system files share one exact mtime
    build_times = [random_mtime_ns(rng, 2019, 2021) // 10**9 * 10**9 for _ in range(4)]

    n_large = max(1, entries // 5000)
    n_links = round(n_files * HARDLINK_FRACTION)
    # WinSxS component folders: 1-5 files each, link candidates for System32
    link_sources = []
    for d in range(grown_start, len(dirs)):
        if dir_area[d] == "winsxs":
            for _ in range(rng.randint(1, 5)):
                if len(files) >= n_files - n_large - n_links:
                    break
                f = new_file(d, "winsxs")
                if f:
                    f[4] = rng.choice(build_times) if rng.random() < 0.6 else None
                    if f[1].endswith((".dll", ".exe", ".sys", ".mui")) and f[2] > 0:
                        link_sources.append(f)
    n_links = min(n_links, len(link_sources))
    n_regular = n_files - n_large - n_links - len(files)

    # everything else: Pareto weights so a few folders hold many files
    weights = []
    for d in range(len(dirs)):
        if dir_area[d] == "winsxs" or (d >= grown_start and rng.random() < EMPTY_DIR_FRACTION):
            weights.append(0.0)
        else:
            weights.append(min(rng.paretovariate(1.2), 300.0))
    for rel in ("Windows/WinSxS", "Windows/System32/DriverStore/FileRepository", "Users",
                "Program Files", "Program Files (x86)"):
        weights[index[rel]] = 0.0  # folders of folders, as on Windows
    weights[index["Windows/System32"]] = 0.02 * sum(weights)  # System32 is crowded
    weights[index["Windows/Fonts"]] = 0.003 * sum(weights)
    chosen = rng.choices(range(len(dirs)), weights, k=max(n_regular, 0))
    for d in chosen:
        area = dir_area[d]
        if area == "misc" and dirs[d].startswith("Users/"):
            area = "docs"
        f = new_file(d, area)
        while f is None:  # name clash on a path at the length limit: try another dir
            f = new_file(rng.choice(chosen), area)

    # a few large files, sized later from the remaining byte budget
    large = []
    for i in range(n_large):
        # the root-level *.sys files exist once; later ones cycle through the rest
        j = i if i < len(LARGE_FILES) else 3 + (i - 3) % (len(LARGE_FILES) - 3)
        parent, pattern = LARGE_FILES[j]
        name = pattern.format(hex=hexid(rng, 8), num=rng.randint(4_000_000, 5_999_999))
        if parent == "":
            root_names.add(name.casefold())
            files.append([None, name, 0, 0o644, None])
            large.append(files[-1])
        else:
            large.append(new_file(index[parent], "system", 0, name))

    # hardlinks: System32 (or SysWOW64 for wow64/x86) names pointing at WinSxS files
    links = []  # (source file record, dir index, name)
    for src in rng.sample(link_sources, n_links):
        comp = dirs[src[0]].rpartition("/")[2]
        target = "Windows/SysWOW64" if comp.startswith(("wow64", "x86")) else "Windows/System32"
        d = index[target]
        if src[1].casefold() in names[d]:
            continue  # same name from another component version: keep the first
        names[d].add(src[1].casefold())
        links.append((src, d, src[1]))
    # names that collided leave slots: fill them with plain System32 files
    for _ in range(n_links - len(links)):
        new_file(index["Windows/System32"], "system")

    # -- sizes: small files as drawn; large files absorb what's left of the budget
    small_total = sum(f[2] for f in files)
    budget = total_bytes - small_total
    min_large = 1 << 20
    if budget < min_large * n_large:
        # budget too small for the drawn sizes: shrink everything proportionally
        scale = max(total_bytes - min_large * n_large, 0) / max(small_total, 1)
        for f in files:
            f[2] = int(f[2] * scale)
        budget = total_bytes - sum(f[2] for f in files)
    shares = [rng.uniform(0.5, 2.0) for _ in large]
    shares[0] *= 3  # pagefile.sys is the biggest
    for f, s in zip(large, shares):
        f[2] = max(int(budget * s / sum(shares)), 0)

    # -- write it all
    buf = rng.randbytes(BUF_SIZE)
    mkdir_ns = []
    for rel in dirs:
        path = root + b"/" + rel.encode()
        os.mkdir(path)
        os.chmod(path, 0o755)  # independent of umask
        mkdir_ns.append(random_mtime_ns(rng))

    def path_of(d, name):
        return root + (b"/" + dirs[d].encode() if d is not None else b"") + b"/" + name.encode()

    total = 0
    for i, (d, name, size, mode, mtime) in enumerate(files):
        path = path_of(d, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            header = b"diffimg-gentree seed=%d file=%d\n" % (seed, i)
            write_content(fd, size, header, buf, rng)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        mtime = mtime or random_mtime_ns(rng)
        os.utime(path, ns=(mtime, mtime))
        total += size
    for src, d, name in links:
        os.link(path_of(src[0], src[1]), path_of(d, name))
    for rel, ns in zip(dirs, mkdir_ns):  # last: adding entries bumps dir mtimes
        os.utime(root + b"/" + rel.encode(), ns=(ns, ns))
    ns = random_mtime_ns(rng)
    os.utime(root, ns=(ns, ns))  # the root too, so the whole tree is reproducible

    # -- counts
    all_names = [rel.rpartition("/")[2] for rel in dirs] + [f[1] for f in files] \
        + [l[2] for l in links]
    has_children = {rel.rpartition("/")[0] for rel in dirs} | \
        {dirs[f[0]] for f in files if f[0] is not None} | {dirs[l[1]] for l in links}
    return {
        "entries": len(dirs) + len(files) + len(links),
        "dirs": len(dirs),
        "files": len(files) + len(links),
        "regular_files": len(files),
        "hardlinks": len(links),
        "empty_dirs": sum(1 for rel in dirs if rel not in has_children),
        "bytes": total,
        "large_files": len(large),
        "non_ascii_names": sum(1 for n in all_names if not n.isascii()),
        "long_names": sum(1 for n in all_names if len(n.encode()) >= 100),
        "max_name_bytes": max(len(n.encode()) for n in all_names),
        "max_depth": max(depth) + 1,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 2),
    }


# --- mutate ----------------------------------------------------------------

def mutate(root, fraction=0.03, seed=2):
    """Change about `fraction` of the files below `root` the ways real use does.
    Returns a dict of counts per kind of change."""
    rng = random.Random(seed)
    root = os.fsencode(root)
    files, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # sorted walk: same choices for the same tree
        for n in sorted(filenames):
            p = os.path.join(dirpath, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                files.append(p)
        if dirpath != root:
            dirs.append(dirpath)
    n = max(1, round(len(files) * fraction))
    buf = rng.randbytes(8 << 20)
    now = 1_735_689_600 * 10**9  # 2025-01-01: newer than anything generate() writes
    counts = dict.fromkeys(["rewritten", "rewritten_same_size_same_mtime", "appended",
                            "chmod_only", "touched_only", "deleted_files", "deleted_dirs",
                            "new_files", "new_dirs", "renamed_dirs"], 0)

    # whole folders to delete: a few leaf folders; their files are out of the pool
    leaves = [d for d in dirs if not any(os.path.isdir(os.path.join(d, c))
                                         for c in os.listdir(d))]
    del_dirs = rng.sample(leaves, min(len(leaves), max(1, n // 100)))
    gone = tuple(d + b"/" for d in del_dirs)
    pool = [f for f in files if not f.startswith(gone)]
    picked = rng.sample(pool, min(len(pool), n + max(1, n // 10)))
    changed, deleted = picked[:n], picked[n:]

    def rewrite(path, size):
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            write_content(fd, size, b"diffimg-mutate seed=%d %d\n" % (seed, rng.getrandbits(32)),
                          buf, rng)
        finally:
            os.close(fd)

    for i, path in enumerate(changed):
        st = os.lstat(path)
        os.chmod(path, st.st_mode | 0o200)  # read-only files must stay writable for us
        kind = i % 20
        if kind < 7:  # new content, new size, new mtime
            rewrite(path, small_size(rng))
            t = now + rng.randrange(10**15)
            os.utime(path, ns=(t, t))
            counts["rewritten"] += 1
        elif kind < 11:  # same size, mtime put back: only a checksum scan sees this
            rewrite(path, st.st_size)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            counts["rewritten_same_size_same_mtime"] += 1
        elif kind < 14:  # log-style append
            with open(path, "ab") as f:
                f.write(b"appended %d\n" % rng.getrandbits(64) * rng.randint(1, 100))
            counts["appended"] += 1
        elif kind < 16:  # permissions only
            os.chmod(path, 0o600 if st.st_mode & 0o777 != 0o600 else 0o644)
            counts["chmod_only"] += 1
            continue
        else:  # touched: mtime only, content identical
            t = now + rng.randrange(10**15)
            os.utime(path, ns=(t, t))
            counts["touched_only"] += 1
        os.chmod(path, st.st_mode)

    for path in deleted:
        os.unlink(path)
        counts["deleted_files"] += 1
    for d in del_dirs:
        shutil.rmtree(d)
        counts["deleted_dirs"] += 1

    # new folders and files in random surviving folders
    alive = [d for d in dirs if not (d + b"/").startswith(gone)]
    new_dirs = []
    for i in range(max(1, n // 50)):
        d = os.path.join(rng.choice(alive), ("Nouveau dossier %d ✨" % i).encode())
        os.mkdir(d)
        new_dirs.append(d)
        counts["new_dirs"] += 1
    for i in range(max(1, n // 10)):
        parent = rng.choice(new_dirs + alive)
        name = "%s new %d.%s" % (rng.choice(DOC_WORDS), i, rng.choice(DOC_EXTS))
        path = os.path.join(parent, name.encode())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_content(fd, small_size(rng), b"diffimg-mutate new %d\n" % i, buf, rng)
        finally:
            os.close(fd)
        counts["new_files"] += 1

    # renamed folders last, deepest first so the shallower paths stay valid
    ren = rng.sample(alive, min(len(alive), max(1, int(len(dirs) * fraction / 10))))
    for d in sorted(ren, key=lambda p: -p.count(b"/")):
        os.rename(d, d + b" (renamed)")
        counts["renamed_dirs"] += 1
    counts["files_before"] = len(files)
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=None,
                    help="default 1 for generate, 2 for --mutate")
    ap.add_argument("--bytes", type=parse_bytes, default=None,
                    help="total file bytes, e.g. 2.9G (default: entries x 29 kB)")
    ap.add_argument("--mutate", type=float, metavar="FRACTION", default=None,
                    help="instead of generating, change this fraction of files in ROOT")
    args = ap.parse_args(argv)
    if args.mutate is not None:
        res = mutate(args.root, args.mutate, 2 if args.seed is None else args.seed)
    else:
        res = generate(args.root, args.entries, 1 if args.seed is None else args.seed,
                       args.bytes)
    json.dump(res, sys.stdout, indent=2, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()

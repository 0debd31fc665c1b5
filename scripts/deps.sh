#!/usr/bin/env bash
# Install what diffimg's demo and tests need on a Debian machine, only what is missing.
# Debian packages come from apt-get (as root), Python packages from pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# command -> Debian package that provides it
declare -A NEED=(
  [setfacl]=acl [getfattr]=attr [rsync]=rsync [xxhsum]=xxhash [zstd]=zstd
  [mksquashfs]=squashfs-tools [mkfs.ext4]=e2fsprogs [mkfs.btrfs]=btrfs-progs [setpriv]=util-linux [sfdisk]=fdisk
  [ntfs-3g]=ntfs-3g [mkntfs]=ntfs-3g [hivexget]=libhivex-bin
  [partclone.restore]=partclone [lzop]=lzop [lz4]=lz4 [xz]=xz-utils [bzip2]=bzip2
  [nginx]=nginx-light [udp-sender]=udpcast [ip]=iproute2 [tc]=iproute2 [nft]=nftables
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
# what pip needs to build pyfuse3 (diffimg mount): libfuse3's headers, found with pkg-config
[ -e /usr/include/fuse3/fuse_lowlevel.h ] || missing+=(libfuse3-dev)
# what pip needs to build the NTFS reader and writer (diffimg/windows/_ntfsvol.c, _ntfswrite.c): libntfs-3g's and xxhash's headers
[ -e /usr/include/ntfs-3g/volume.h ] || missing+=(ntfs-3g-dev)
[ -e /usr/include/xxhash.h ] || missing+=(libxxhash-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# diffimg must be installed (editable) from this very checkout, with its dependencies
here=$(pwd -P)/diffimg
# and its compiled part (diffimg/scan/_folder.c) built from the current source
installed=$(cd / && "$PYTHON" -c "import os, diffimg, msgpack, xxhash, zstandard, click, pytest, hypothesis, pytest_benchmark, pyfuse3, libtorrent
import diffimg.scan._folder as core, diffimg.windows._ntfsvol as ntfsvol
here = os.path.dirname(os.path.realpath(diffimg.__file__))
assert os.path.getmtime(core.__file__) >= os.path.getmtime(os.path.join(here, 'scan', '_folder.c'))
assert all(os.path.getmtime(ntfsvol.__file__) >= os.path.getmtime(os.path.join(here, 'windows', name)) for name in ('_ntfsvol.c', '_ntfswrite.c', '_ntfsvol.h'))
print(here)" 2>/dev/null || true)
if [ "$installed" != "$here" ] || ! "$PYTHON" -m ruff --version >/dev/null 2>&1; then
  echo "deps: installing Python packages" >&2
  "$PYTHON" -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v -e '^WARNING: Running pip as' -e 'is ignored: it is neither' >&2 || true
  "$PYTHON" -c "import diffimg.scan._folder, diffimg.windows._ntfsvol, msgpack, xxhash, zstandard, click, pytest, pyfuse3, libtorrent"
fi

#!/bin/bash
# The seed's differential image procedure, step for step (see bench/README.md):
# ask rsync what differs between the new tree and the mounted base image, copy
# the listed files to a staging folder and pack that folder with mksquashfs.
#
#   bench/seed_diff.sh TREE MNT OUTDIR     -> OUTDIR/seed.sqfs
#
# OUTDIR also gets the seed's lists (lista_img, list_ln, list_rm, list_rsync)
# and the staging folder img.tmp. Start with an empty OUTDIR: the seed did not
# clean up, and a stale img.tmp would end up in the image.
set -e
tree=$(realpath "$1")
mnt=$(realpath "$2")
mkdir -p "$3"
cd "$3"

rsync -aHvn --delete "$tree"/ "$mnt"/ > lista_img
sed -i -e 's/^sent.*.bytes\/sec//g' -e 's/^total.*.speedup.*.$//g' -e 's/sending.*.list//g' lista_img
# grep exits 1 when nothing matches; that is not an error here.
grep -e '\->' -e '\=>' lista_img > list_ln || true
grep -e ^deleting lista_img | sed s/^deleting\ //g > list_rm
grep -v -e '\->' -e '\=>' -e ^deleting lista_img > list_rsync || true
rsync -aHq --files-from=list_rsync "$tree"/ img.tmp
# The seed ran mksquashfs with its defaults (gzip, all CPUs); the compression
# options here match diffimg's so that the sizes compare.
mksquashfs img.tmp seed.sqfs -comp zstd -Xcompression-level "${LEVEL:-9}" -noappend -quiet -no-progress

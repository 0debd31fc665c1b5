/* What the two halves of diffimg.windows._ntfsvol share: the reader (_ntfsvol.c) and the
 * writer (_ntfswrite.c), both methods of one Volume. */
#ifndef DIFFIMG_NTFSVOL_H
#define DIFFIMG_NTFSVOL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/ea.h>
#include <ntfs-3g/index.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/object_id.h>
#include <ntfs-3g/reparse.h>
#include <ntfs-3g/runlist.h>
#include <ntfs-3g/security.h>
#include <ntfs-3g/unistr.h>
#include <ntfs-3g/volume.h>

#define CHUNK (1 << 20)

typedef struct {
    PyObject_HEAD
    ntfs_volume *vol;
    unsigned char *buffer;           /* CHUNK bytes for hashing and copying */
    int writable;
} VolumeObject;

typedef struct {
    PyObject_HEAD
    PyObject *volume;                /* keeps the volume open while the stream is */
    ntfs_inode *ni;
    ntfs_attr *na;
    s64 pos;
} StreamObject;

extern PyTypeObject StreamType;
extern PyMethodDef writer_methods[];

int check_open(VolumeObject *self);
PyObject *utf8_name(const ntfschar *name, int length);
int open_data(ntfs_volume *vol, unsigned long long mft_no, PyObject *stream, ntfs_inode **ni_out,
              ntfs_attr **na_out);

#endif

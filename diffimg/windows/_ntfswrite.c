/* The writer half of diffimg.windows._ntfsvol: methods of a Volume opened with writable=True,
 * used by restore onto an unmounted NTFS partition (restore/ntfsexec.py). wimlib's
 * src/ntfs-3g_apply.c was the reference for what to call and in which order; written here.
 *
 *   make(parent, name, kind, rdev=0, target=None) -> mft_no
 *       a new entry named name in the folder parent: kind 'f' file, 'd' folder, 'p' FIFO,
 *       's' socket, 'c'/'b' device (rdev), 'l' an Interix symlink to target (bytes); EEXIST
 *       when the name is taken.
 *   link(mft_no, parent, name)          another name for a file
 *   unlink(parent, name)                a name gone (with its inode when it was the last; a
 *                                       folder must be empty)
 *   write(mft_no, stream, source, size, sparse) -> (digest or None, bytes read)
 *       the $DATA attribute (stream None: the unnamed one; else made when missing) emptied,
 *       then filled from source (an fd, or bytes) and hashed as it
 *       is written, reading at most size bytes: digest None when the source holds more.
 *       sparse: blocks of zeros stay holes.
 *   set_holes(mft_no, size)             the unnamed $DATA made size bytes of holes
 *   set_values(mft_no, acl, reparse, ea, object_id, attrib, times)
 *       each value that is not None set raw, in that order (times last: every other call
 *       moves them): times (creation, last write, last access) in NTFS units.
 *   set_dos_name(mft_no, parent, name)  the short name of the inode's link in parent
 *   free_bytes() -> the free room of the volume
 * Every change is made when the call returns; close() writes the volume's own records back.
 */
#include "_ntfsvol.h"

#include <unistd.h>

#include <ntfs-3g/lcnalloc.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define HOLE_UNIT 4096                /* sparse: a block of zeros this large stays a hole */

static const unsigned char zeros[HOLE_UNIT];

static int check_writable(VolumeObject *self)
{
    if (check_open(self) < 0)
        return -1;
    if (!self->writable) {
        PyErr_SetString(PyExc_ValueError, "the NTFS volume is open read-only");
        return -1;
    }
    return 0;
}

static PyObject *os_error(void)
{
    if (!errno)
        errno = EIO;
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* name (UTF-8 bytes) in UTF-16, or NULL with a Python error: a name no folder can hold (empty,
 * '/', NUL, longer than 255 UTF-16 units) is EINVAL. */
static ntfschar *ucs_name(PyObject *name, int *length)
{
    if (!PyBytes_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "a name is bytes");
        return NULL;
    }
    const char *text = PyBytes_AS_STRING(name);
    Py_ssize_t size = PyBytes_GET_SIZE(name);
    if (size == 0 || memchr(text, '/', size) != NULL || (Py_ssize_t)strlen(text) != size) {
        errno = EINVAL;
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    ntfschar *out = NULL;
    int n = ntfs_mbstoucs(text, &out);
    if (n <= 0 || n > NTFS_MAX_NAME_LEN) {
        free(out);
        errno = n > NTFS_MAX_NAME_LEN ? ENAMETOOLONG : EILSEQ;
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    *length = n;
    return out;
}

static ntfs_inode *open_inode(VolumeObject *self, unsigned long long mft_no)
{
    errno = 0;
    ntfs_inode *ni = ntfs_inode_open(self->vol, (MFT_REF)mft_no);
    if (ni == NULL)
        os_error();
    return ni;
}

static ntfs_inode *open_folder(VolumeObject *self, unsigned long long mft_no)
{
    ntfs_inode *ni = open_inode(self, mft_no);
    if (ni != NULL && !(ni->mrec->flags & MFT_RECORD_IS_DIRECTORY)) {
        ntfs_inode_close(ni);
        errno = ENOTDIR;
        os_error();
        return NULL;
    }
    return ni;
}

/* ---- names ---- */

/* ni closed, the first failure kept: *failed and *code (its errno) set by the first. */
static void close_keeping(ntfs_inode *ni, int *failed, int *code)
{
    if (ntfs_inode_close(ni) && !*failed) {
        *failed = 1;
        *code = errno;
    }
}

static PyObject *answer(int failed, int code)
{
    if (failed) {
        errno = code;
        return os_error();
    }
    Py_RETURN_NONE;
}

/* name in UTF-16 (*uname, to free) and the folder parent opened (*dir_ni): 0, or -1 with a
 * Python error and nothing to free. */
static int name_in_folder(VolumeObject *self, unsigned long long parent, PyObject *name,
                          ntfschar **uname, int *length, ntfs_inode **dir_ni)
{
    if ((*uname = ucs_name(name, length)) == NULL)
        return -1;
    if ((*dir_ni = open_folder(self, parent)) == NULL) {
        free(*uname);
        return -1;
    }
    return 0;
}

/* A new inode of kind named uname in dir_ni (utarget: an Interix symlink's target), or NULL
 * with errno (EEXIST: the name is taken). */
static ntfs_inode *create(ntfs_inode *dir_ni, const ntfschar *uname, int length, int kind,
                          dev_t rdev, ntfschar *utarget, int target_length)
{
    errno = 0;
    if (ntfs_inode_lookup_by_name(dir_ni, uname, length) != (u64)-1) {
        errno = EEXIST;
        return NULL;
    }
    if (errno != ENOENT)
        return NULL;
    errno = 0;
    le32 none = const_cpu_to_le32(0);       /* (a descriptor is given with the values) */
    switch (kind) {
    case 'f': return ntfs_create(dir_ni, none, uname, (u8)length, S_IFREG);
    case 'd': return ntfs_create(dir_ni, none, uname, (u8)length, S_IFDIR);
    case 'p': return ntfs_create(dir_ni, none, uname, (u8)length, S_IFIFO);
    case 's': return ntfs_create(dir_ni, none, uname, (u8)length, S_IFSOCK);
    case 'c': return ntfs_create_device(dir_ni, none, uname, (u8)length, S_IFCHR, rdev);
    case 'b': return ntfs_create_device(dir_ni, none, uname, (u8)length, S_IFBLK, rdev);
    case 'l':
        return ntfs_create_symlink(dir_ni, none, uname, (u8)length, utarget, target_length);
    }
    errno = EINVAL;
    return NULL;
}

static PyObject *Volume_make(VolumeObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"parent", "name", "kind", "rdev", "target", NULL};
    unsigned long long parent, rdev = 0;
    PyObject *name;
    const char *target = NULL;
    int kind;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KSC|Ky", keywords, &parent, &name, &kind,
                                     &rdev, &target) || check_writable(self) < 0)
        return NULL;
    ntfschar *utarget = NULL;
    int target_length = 0;
    /* (an Interix symlink's target may hold '/': it is converted whole) */
    if (kind == 'l' && (target == NULL || (target_length = ntfs_mbstoucs(target, &utarget)) <= 0)) {
        free(utarget);
        errno = EINVAL;
        return os_error();
    }
    int length;
    ntfschar *uname;
    ntfs_inode *dir_ni;
    if (name_in_folder(self, parent, name, &uname, &length, &dir_ni) < 0) {
        free(utarget);
        return NULL;
    }
    ntfs_inode *ni = create(dir_ni, uname, length, kind, (dev_t)rdev, utarget, target_length);
    int failed = ni == NULL, code = errno ? errno : EIO;
    free(uname);
    free(utarget);
    unsigned long long mft_no = ni != NULL ? ni->mft_no : 0;
    /* (closed through its folder, still open: the library would open a second copy of it to
     * update the new name's index entry, and the later close of ours would undo that) */
    if (ni != NULL && ntfs_inode_close_in_dir(ni, dir_ni)) {
        failed = 1;
        code = errno;
    }
    close_keeping(dir_ni, &failed, &code);
    if (failed) {
        errno = code;
        return os_error();
    }
    return PyLong_FromUnsignedLongLong(mft_no);
}

static PyObject *Volume_link(VolumeObject *self, PyObject *args)
{
    unsigned long long mft_no, parent;
    PyObject *name;
    if (!PyArg_ParseTuple(args, "KKS", &mft_no, &parent, &name) || check_writable(self) < 0)
        return NULL;
    ntfs_inode *ni = open_inode(self, mft_no), *dir_ni;
    ntfschar *uname;
    int length;
    if (ni == NULL)
        return NULL;
    if (name_in_folder(self, parent, name, &uname, &length, &dir_ni) < 0) {
        ntfs_inode_close(ni);
        return NULL;
    }
    errno = 0;
    int failed = 1;
    if (ntfs_inode_lookup_by_name(dir_ni, uname, length) != (u64)-1)
        errno = EEXIST;
    else
        failed = ntfs_link(ni, dir_ni, uname, (u8)length) != 0;
    int code = errno;
    free(uname);
    close_keeping(dir_ni, &failed, &code);      /* (the folder first, as ntfs-3g does) */
    close_keeping(ni, &failed, &code);
    return answer(failed, code);
}

static PyObject *Volume_unlink(VolumeObject *self, PyObject *args)
{
    unsigned long long parent;
    PyObject *name;
    if (!PyArg_ParseTuple(args, "KS", &parent, &name) || check_writable(self) < 0)
        return NULL;
    ntfs_inode *dir_ni;
    ntfschar *uname;
    int length;
    if (name_in_folder(self, parent, name, &uname, &length, &dir_ni) < 0)
        return NULL;
    errno = 0;
    u64 mref = ntfs_inode_lookup_by_name(dir_ni, uname, length);
    ntfs_inode *ni = mref == (u64)-1 ? NULL : ntfs_inode_open(self->vol, mref);
    if (ni == NULL) {
        int code = errno ? errno : ENOENT;
        free(uname);
        ntfs_inode_close(dir_ni);
        return answer(1, code);
    }
    /* (ntfs_delete closes both inodes, whatever it answers; a folder must be empty) */
    errno = 0;
    int failed = ntfs_delete(self->vol, NULL, ni, dir_ni, uname, (u8)length) != 0;
    int code = errno;
    free(uname);
    return answer(failed, code);
}

/* ---- content ---- */

/* The $DATA attribute of ni named stream (None: the unnamed one), made when missing. */
static ntfs_attr *data_attribute(ntfs_inode *ni, PyObject *stream)
{
    ntfschar *uname = NULL;
    int length = 0;
    if (stream != Py_None && (uname = ucs_name(stream, &length)) == NULL)
        return NULL;
    errno = 0;
    ntfs_attr *na = ntfs_attr_open(ni, AT_DATA, uname ? uname : AT_UNNAMED, length);
    if (na == NULL && errno == ENOENT) {
        if (ntfs_attr_add(ni, AT_DATA, uname ? uname : AT_UNNAMED, length, NULL, 0) == 0)
            na = ntfs_attr_open(ni, AT_DATA, uname ? uname : AT_UNNAMED, length);
    }
    free(uname);
    if (na == NULL)
        os_error();
    return na;
}

static int write_all(ntfs_attr *na, s64 pos, const unsigned char *data, s64 count)
{
    while (count > 0) {
        errno = 0;
        s64 written = ntfs_attr_pwrite(na, pos, count, data);
        if (written <= 0) {
            if (!errno)
                errno = EIO;
            return -1;
        }
        pos += written;
        data += written;
        count -= written;
    }
    return 0;
}

/* Where write() reads: an fd, or bytes. */
typedef struct {
    int fd;
    Py_buffer bytes;
    int has_bytes;
    s64 pos;
} Source;

/* Up to want bytes of the source into buffer: the count (0 at its end), -1 with errno. */
static s64 source_read(Source *s, unsigned char *buffer, s64 want)
{
    if (s->has_bytes) {
        s64 left = s->bytes.len - s->pos;
        s64 n = left < want ? left : want;
        memcpy(buffer, (const unsigned char *)s->bytes.buf + s->pos, (size_t)n);
        s->pos += n;
        return n;
    }
    for (;;) {
        ssize_t got = read(s->fd, buffer, (size_t)want);
        if (got >= 0)
            return got;
        if (errno != EINTR)
            return -1;
        if (PyErr_CheckSignals() < 0)
            return -2;
    }
}

/* The source read whole (at most size bytes and one more) into na, emptied first. */
static PyObject *fill(VolumeObject *self, ntfs_attr *na, Source *src, s64 size, int sparse)
{
    XXH3_state_t *state = XXH3_createState();
    if (state == NULL)
        return PyErr_NoMemory();
    XXH3_128bits_reset(state);
    s64 pos = 0;
    int too_long = 0;
    errno = 0;
    /* sparse: the size first (a hole), then the blocks that are not zeros; else the room
     * taken at once, in as few runs as the volume has (as wimlib does) */
    if (ntfs_attr_truncate(na, 0) ||
        (sparse ? ntfs_attr_truncate(na, size) : ntfs_attr_truncate_solid(na, size)))
        goto failed;
    for (;;) {
        s64 got = source_read(src, self->buffer, CHUNK);
        if (got == -2)
            goto failed_python;
        if (got < 0) {
            /* (the source's fault, not the volume's: said apart) */
            XXH3_freeState(state);
            PyObject *error = PyErr_SetFromErrno(PyExc_OSError);
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (value != NULL)
                PyObject_SetAttrString(value, "ntfs_source", Py_True);
            PyErr_Restore(type, value, tb);
            return error;
        }
        if (got == 0)
            break;
        if (pos + got > size) {
            too_long = 1;
            pos += got;
            break;
        }
        XXH3_128bits_update(state, self->buffer, (size_t)got);
        if (sparse) {
            for (s64 at = 0; at < got; at += HOLE_UNIT) {
                s64 n = got - at < HOLE_UNIT ? got - at : HOLE_UNIT;
                if (memcmp(self->buffer + at, zeros, (size_t)n) != 0 &&
                    write_all(na, pos + at, self->buffer + at, n) < 0)
                    goto failed;
            }
        } else if (write_all(na, pos, self->buffer, got) < 0) {
            goto failed;
        }
        pos += got;
        if (PyErr_CheckSignals() < 0)
            goto failed_python;
    }
    if (!too_long && pos < size && ntfs_attr_truncate(na, pos))
        goto failed;                    /* (shorter than said: its digest will not match) */
    XXH3_freeState(state);
    if (too_long)
        return Py_BuildValue("(OL)", Py_None, (long long)pos);
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state));
    return Py_BuildValue("(y#L)", (const char *)canonical.digest,
                         (Py_ssize_t)sizeof(canonical.digest), (long long)pos);
failed:
    os_error();
failed_python:
    XXH3_freeState(state);
    return NULL;
}

static PyObject *Volume_write(VolumeObject *self, PyObject *args)
{
    unsigned long long mft_no;
    long long size;
    PyObject *stream, *source;
    int sparse;
    if (!PyArg_ParseTuple(args, "KOOLp", &mft_no, &stream, &source, &size, &sparse) ||
        check_writable(self) < 0)
        return NULL;
    if (size < 0) {
        errno = EINVAL;
        return os_error();
    }
    Source src = {.fd = -1};
    if (PyLong_Check(source)) {
        src.fd = (int)PyLong_AsLong(source);
        if (PyErr_Occurred())
            return NULL;
    } else if (PyObject_GetBuffer(source, &src.bytes, PyBUF_SIMPLE) == 0) {
        src.has_bytes = 1;
    } else {
        return NULL;
    }
    PyObject *result = NULL;
    ntfs_inode *ni = open_inode(self, mft_no);
    if (ni != NULL) {
        ntfs_attr *na = data_attribute(ni, stream);
        if (na != NULL) {
            result = fill(self, na, &src, size, sparse);
            ntfs_attr_close(na);
        }
        if (ntfs_inode_close(ni) && result != NULL) {
            Py_CLEAR(result);
            os_error();
        }
    }
    if (src.has_bytes)
        PyBuffer_Release(&src.bytes);
    return result;
}

/* The unnamed $DATA made size bytes of holes (a WOF file's: its content is a named stream). */
static PyObject *Volume_set_holes(VolumeObject *self, PyObject *args)
{
    unsigned long long mft_no;
    long long size;
    if (!PyArg_ParseTuple(args, "KL", &mft_no, &size) || check_writable(self) < 0)
        return NULL;
    if (size < 0) {
        errno = EINVAL;
        return os_error();
    }
    ntfs_inode *ni = open_inode(self, mft_no);
    if (ni == NULL)
        return NULL;
    int failed = 1, code = EIO;
    ntfs_attr *na = data_attribute(ni, Py_None);
    if (na != NULL) {
        errno = 0;
        failed = ntfs_attr_truncate(na, 0) || ntfs_attr_truncate(na, size);
        code = errno ? errno : EIO;
        ntfs_attr_close(na);
    } else {
        PyErr_Clear();
        code = errno ? errno : EIO;
    }
    close_keeping(ni, &failed, &code);
    return answer(failed, code);
}

/* ---- values ---- */

/* value (bytes or None) set by set(ni, value, size, 0): 0, or -1 with errno. */
static int set_one(ntfs_inode *ni, PyObject *value,
                   int (*set)(ntfs_inode *, const char *, size_t, int))
{
    if (value == Py_None)
        return 0;
    if (!PyBytes_Check(value)) {
        errno = EINVAL;
        return -1;
    }
    errno = 0;
    int answer = set(ni, PyBytes_AS_STRING(value), (size_t)PyBytes_GET_SIZE(value), 0);
    if (answer) {
        if (answer < -1)
            errno = -answer;            /* (ntfs_set_ntfs_ea answers -errno) */
        if (!errno)
            errno = EIO;
        return -1;
    }
    return 0;
}

static int set_descriptor(ntfs_inode *ni, const char *value, size_t size, int flags)
{
    struct SECURITY_CONTEXT scx;
    memset(&scx, 0, sizeof(scx));
    scx.vol = ni->vol;
    return ntfs_set_ntfs_acl(&scx, ni, value, size, flags);
}

static PyObject *Volume_set_values(VolumeObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"mft_no", "acl", "reparse", "ea", "object_id", "attrib", "times",
                               NULL};
    unsigned long long mft_no;
    PyObject *acl = Py_None, *reparse = Py_None, *ea = Py_None, *object_id = Py_None;
    PyObject *attrib = Py_None, *times = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "K|OOOOOO", keywords, &mft_no, &acl, &reparse,
                                     &ea, &object_id, &attrib, &times) ||
        check_writable(self) < 0)
        return NULL;
    u64 when[3];
    if (times != Py_None && !PyArg_ParseTuple(times, "KKK", &when[0], &when[1], &when[2]))
        return NULL;
    le32 flags = const_cpu_to_le32(0);
    if (attrib != Py_None) {
        unsigned long value = PyLong_AsUnsignedLong(attrib);
        if (PyErr_Occurred())
            return NULL;
        flags = cpu_to_le32((u32)value);
    }
    ntfs_inode *ni = open_inode(self, mft_no);
    if (ni == NULL)
        return NULL;
    int failed = set_one(ni, acl, set_descriptor) || set_one(ni, reparse, ntfs_set_ntfs_reparse_data)
                 || set_one(ni, ea, ntfs_set_ntfs_ea) ||
                 set_one(ni, object_id, ntfs_set_ntfs_object_id);
    if (!failed && attrib != Py_None) {
        errno = 0;
        failed = ntfs_set_ntfs_attrib(ni, (const char *)&flags, sizeof(flags), 0) != 0;
    }
    if (!failed && times != Py_None) {
        le64 raw[3] = {cpu_to_le64(when[0]), cpu_to_le64(when[1]), cpu_to_le64(when[2])};
        errno = 0;
        failed = ntfs_inode_set_times(ni, (const char *)raw, sizeof(raw), 0) != 0;
    }
    int code = errno;
    close_keeping(ni, &failed, &code);
    return answer(failed, code);
}

static PyObject *Volume_set_dos_name(VolumeObject *self, PyObject *args)
{
    unsigned long long mft_no, parent;
    PyObject *name;
    if (!PyArg_ParseTuple(args, "KKS", &mft_no, &parent, &name) || check_writable(self) < 0)
        return NULL;
    ntfs_inode *ni = open_inode(self, mft_no), *dir_ni = NULL;
    if (ni == NULL || (dir_ni = open_folder(self, parent)) == NULL) {
        if (ni != NULL)
            ntfs_inode_close(ni);
        return NULL;
    }
    /* (ntfs_set_ntfs_dos_name closes both inodes, whatever it answers) */
    errno = 0;
    if (ntfs_set_ntfs_dos_name(ni, dir_ni, PyBytes_AS_STRING(name), (size_t)PyBytes_GET_SIZE(name),
                               0))
        return os_error();
    Py_RETURN_NONE;
}

static PyObject *Volume_free_bytes(VolumeObject *self, PyObject *unused)
{
    if (check_open(self) < 0)
        return NULL;
    errno = 0;
    if (ntfs_volume_get_free_space(self->vol) < 0)
        return os_error();
    s64 clusters = self->vol->free_clusters;
    return PyLong_FromLongLong(clusters < 0 ? 0 : (long long)clusters * self->vol->cluster_size);
}

PyMethodDef writer_methods[] = {
    {"make", (PyCFunction)(void (*)(void))Volume_make, METH_VARARGS | METH_KEYWORDS,
     "A new entry in a folder; its MFT number."},
    {"link", (PyCFunction)Volume_link, METH_VARARGS, "Another name for a file."},
    {"unlink", (PyCFunction)Volume_unlink, METH_VARARGS, "A name removed."},
    {"write", (PyCFunction)Volume_write, METH_VARARGS, "A $DATA filled from a source, hashed."},
    {"set_holes", (PyCFunction)Volume_set_holes, METH_VARARGS, "The unnamed $DATA all holes."},
    {"set_values", (PyCFunction)(void (*)(void))Volume_set_values, METH_VARARGS | METH_KEYWORDS,
     "An inode's values set raw, times last."},
    {"set_dos_name", (PyCFunction)Volume_set_dos_name, METH_VARARGS, "A link's short name."},
    {"free_bytes", (PyCFunction)Volume_free_bytes, METH_NOARGS, "The volume's free room."},
    {NULL},
};

/* An NTFS volume read through libntfs-3g, unmounted (or mounted read-only by ntfs-3g beside it):
 * the reader diffimg uses for a partition given as itself (scan/ntfswalk.py).
 *
 * Volume(path) opens the volume read-only. Its methods:
 *   listdir(mft_no) -> ([(name, mft_no, kind, nlink, size, mtime, ctime, crtime, attrib, acl,
 *                        reparse, object_id, ea, dos_name, streams, extra)], bad names)
 *       the folder's entries in index order, each inode's values read raw: times in NTFS
 *       units (100 ns since 1601), attrib as ntfs-3g gives system.ntfs_attrib, acl the
 *       self-relative security descriptor, reparse the reparse data, object_id the object ID
 *       (16 or 64 bytes), ea the raw $EA attribute (each None when absent), dos_name the
 *       8.3 short name of that link or None, streams [(name, size)] of the named $DATA
 *       attributes. kind is what ntfs-3g's FUSE view shows (its getattr): 'd' folder, 'l' a
 *       reparse point or an Interix symlink (extra: its target, or None for a reparse point),
 *       'f' file, 'p' FIFO, 's' socket, 'c'/'b' an Interix device (extra: its rdev).
 *   hash(mft_no, stream) -> (size, xxh3-128 digest, has holes) of the unnamed $DATA (stream
 *       None) or the named one, read through the library.
 *   read(mft_no, stream) -> Stream with readinto(buffer) and close(): the bytes in order.
 *   holes(mft_no, stream) -> (whether it has holes, whether it is nothing but holes or
 *       zeros), its content unread.
 *   close()
 * Names are UTF-8 (ntfs_ucstombs, as ntfs-3g shows them). The library is not thread safe: the
 * GIL is held throughout, and one Volume is used by one thread.
 */
#include "_ntfsvol.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#define MAX_REPARSE (16 * 1024 + 8)     /* NTFS's limit on reparse data, and its header */
#define MAX_DESCRIPTOR (1 << 20)         /* far above any real security descriptor */
#define MAX_EA (1 << 16)                 /* NTFS's limit on a file's extended attributes */
#define INTX_MAX (sizeof(INTX_FILE_TYPES) + sizeof(ntfschar) * 4096)

int check_open(VolumeObject *self)
{
    if (self->vol == NULL) {
        PyErr_SetString(PyExc_ValueError, "the NTFS volume is closed");
        return -1;
    }
    return 0;
}

/* 0, or -1 with errno when the volume could not be written back whole (opened writable). */
static int close_volume(VolumeObject *self)
{
    ntfs_volume *vol = self->vol;
    if (vol == NULL)
        return 0;
    self->vol = NULL;
    /* what ntfs_open_secure opened, which ntfs_umount does not close */
    if (vol->secure_ni) {
        ntfs_index_ctx_put(vol->secure_xsii);
        ntfs_index_ctx_put(vol->secure_xsdh);
        ntfs_inode_close(vol->secure_ni);
        vol->secure_ni = NULL;
    }
    errno = 0;
    return ntfs_umount(vol, FALSE);
}

static int Volume_init(VolumeObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"path", "writable", NULL};
    PyObject *path_obj;
    int writable = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|p", keywords, PyUnicode_FSConverter,
                                     &path_obj, &writable))
        return -1;
    if (self->vol != NULL) {        /* its open Streams point into it: never opened anew */
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_ValueError, "the NTFS volume is open already");
        return -1;
    }
    errno = 0;
    /* writable: the device opened O_EXCL (a block device mounted elsewhere is refused), and
     * the journal reset as ntfs-3g's mount does by default; a hibernated Windows is refused */
    ntfs_volume *vol = ntfs_mount(PyBytes_AS_STRING(path_obj),
                                  writable ? NTFS_MNT_EXCLUSIVE | NTFS_MNT_RECOVER
                                           : NTFS_MNT_RDONLY);
    if (vol == NULL) {
        int code = errno ? errno : EIO;
        PyErr_SetObject(PyExc_OSError, Py_BuildValue("(isO)", code, strerror(code), path_obj));
        Py_DECREF(path_obj);
        return -1;
    }
    Py_DECREF(path_obj);
    /* the library opens a device it may not write read-only, saying nothing */
    if (writable && NVolReadOnly(vol)) {
        ntfs_umount(vol, FALSE);
        errno = EROFS;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    /* the security descriptors' index ($Secure), needed to read them (as wimlib does) */
    if (ntfs_open_secure(vol) && vol->major_ver >= 3) {
        int code = errno ? errno : EIO;
        ntfs_umount(vol, FALSE);
        PyErr_SetObject(PyExc_OSError, Py_BuildValue("(is)", code, "cannot open the index of "
                                                     "security descriptors ($Secure)"));
        return -1;
    }
    /* what ntfs-3g's mount shows: hidden files, no metafiles ($MFT...), names case-sensitive */
    NVolClearShowSysFiles(vol);
    NVolSetShowHidFiles(vol);
    NVolSetCaseSensitive(vol);
    self->vol = vol;
    self->writable = writable;
    if (self->buffer == NULL && (self->buffer = malloc(CHUNK)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Volume_dealloc(VolumeObject *self)
{
    close_volume(self);
    free(self->buffer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Volume_close(VolumeObject *self, PyObject *unused)
{
    if (close_volume(self) < 0) {
        if (!errno)
            errno = EIO;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* A name in UTF-16 as ntfs-3g shows it (UTF-8), or NULL with errno (EILSEQ for a name that is
 * no valid UTF-16). */
PyObject *utf8_name(const ntfschar *name, int length)
{
    char *out = NULL;
    int n = ntfs_ucstombs(name, length, &out, 0);
    if (n < 0)
        return NULL;
    PyObject *result = PyBytes_FromStringAndSize(out, n);
    free(out);
    return result;
}

/* ---- a folder's names ---- */

typedef struct {
    PyObject *names;            /* [(name, mft_no, name_type)] */
    int failed;                 /* a Python error is set */
    int bad_names;              /* names that are no valid UTF-16, skipped */
} Listing;

static int collect(void *dirent, const ntfschar *name, const int name_len, const int name_type,
                   const s64 pos, const MFT_REF mref, const unsigned dt_type)
{
    Listing *listing = dirent;
    (void)pos;
    (void)dt_type;
    if (name_type == FILE_NAME_DOS)
        return 0;                               /* a short name alone: asked for with its link */
    if (MREF(mref) < FILE_first_user && MREF(mref) != FILE_root)
        return 0;                               /* a metafile */
    if ((name_len == 1 && name[0] == const_cpu_to_le16('.')) ||
        (name_len == 2 && name[0] == const_cpu_to_le16('.') && name[1] == const_cpu_to_le16('.')))
        return 0;
    /* a name no folder can hold: a damaged index (ntfs-3g's readdir answers EIO) */
    for (int i = 0; i < name_len; i++) {
        if (name[i] == const_cpu_to_le16(0) || name[i] == const_cpu_to_le16('/')) {
            errno = EUCLEAN;
            PyErr_SetFromErrno(PyExc_OSError);
            listing->failed = 1;
            return -1;
        }
    }
    PyObject *text = utf8_name(name, name_len);
    if (text == NULL) {
        if (PyErr_Occurred()) {
            listing->failed = 1;
            return -1;
        }
        listing->bad_names++;
        return 0;
    }
    PyObject *item = Py_BuildValue("(NKi)", text, (unsigned long long)MREF(mref), name_type);
    if (item == NULL || PyList_Append(listing->names, item) < 0) {
        Py_XDECREF(item);
        listing->failed = 1;
        return -1;
    }
    Py_DECREF(item);
    return 0;
}

/* ---- one inode's values ---- */

static PyObject *value_or_none(int n, const char *buffer)
{
    if (n <= 0)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(buffer, n);
}

/* A value read by get(ni, buffer, size), growing the buffer as the library asks, up to limit
 * bytes (EFBIG past it: a crafted volume may claim any size). */
static PyObject *read_value(ntfs_inode *ni, int (*get)(ntfs_inode *, char *, size_t), size_t first,
                            size_t limit)
{
    size_t size = first;
    for (int attempt = 0; attempt < 3; attempt++) {
        char *buffer = malloc(size);
        if (buffer == NULL)
            return PyErr_NoMemory();
        errno = 0;
        int n = get(ni, buffer, size);
        if (n > (int)limit) {
            free(buffer);
            errno = EFBIG;
            return NULL;
        }
        if (n > (int)size) {
            free(buffer);
            size = (size_t)n;
            continue;
        }
        if (n < 0 && n != -ENODATA && errno != ENODATA) {
            free(buffer);
            errno = n < -1 ? -n : (errno ? errno : EIO);
            return NULL;
        }
        PyObject *result = value_or_none(n, buffer);
        free(buffer);
        return result;
    }
    errno = EIO;
    return NULL;
}

/* The self-relative security descriptor, as ntfs-3g gives system.ntfs_acl (found by its
 * security ID in $Secure, or in the inode's own $SECURITY_DESCRIPTOR). */
static int get_descriptor(ntfs_inode *ni, char *value, size_t size)
{
    struct SECURITY_CONTEXT scx;
    memset(&scx, 0, sizeof(scx));
    scx.vol = ni->vol;
    return ntfs_get_ntfs_acl(&scx, ni, value, size);
}

/* [(name, size)] of the named $DATA attributes of ni. */
static PyObject *streams_of(ntfs_inode *ni)
{
    PyObject *found = PyList_New(0);
    if (found == NULL)
        return NULL;
    ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(ni, NULL);
    if (ctx == NULL) {
        Py_DECREF(found);
        return NULL;
    }
    while (!ntfs_attr_lookup(AT_DATA, NULL, 0, CASE_SENSITIVE, 0, NULL, 0, ctx)) {
        ATTR_RECORD *a = ctx->attr;
        if (a->name_length == 0)
            continue;
        /* an attribute in several extents is listed at each: only its first counts */
        if (a->non_resident && sle64_to_cpu(a->lowest_vcn) != 0)
            continue;
        PyObject *name = utf8_name((ntfschar *)((u8 *)a + le16_to_cpu(a->name_offset)),
                                   a->name_length);
        if (name == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a named stream whose name is no valid UTF-16");
            goto failed;
        }
        s64 length = ntfs_get_attribute_value_length(a);
        if (length < 0) {
            Py_DECREF(name);
            errno = EUCLEAN;
            PyErr_SetFromErrno(PyExc_OSError);
            goto failed;
        }
        PyObject *item = Py_BuildValue("(NK)", name, (unsigned long long)length);
        if (item == NULL || PyList_Append(found, item) < 0) {
            Py_XDECREF(item);
            goto failed;
        }
        Py_DECREF(item);
    }
    if (errno != ENOENT) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto failed;
    }
    ntfs_attr_put_search_ctx(ctx);
    return found;
failed:
    ntfs_attr_put_search_ctx(ctx);
    Py_DECREF(found);
    return NULL;
}

/* The links to ni: its $FILE_NAME attributes but short names alone. */
static int links_of(ntfs_inode *ni)
{
    int links = 0;
    ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(ni, NULL);
    if (ctx == NULL)
        return -1;
    while (!ntfs_attr_lookup(AT_FILE_NAME, NULL, 0, CASE_SENSITIVE, 0, NULL, 0, ctx)) {
        if (ctx->attr->non_resident)
            continue;
        FILE_NAME_ATTR *fn = (FILE_NAME_ATTR *)((u8 *)ctx->attr +
                                                le16_to_cpu(ctx->attr->value_offset));
        if (fn->file_name_type != FILE_NAME_DOS)
            links++;
    }
    ntfs_attr_put_search_ctx(ctx);
    return links;
}

/* kind and extra as ntfs-3g's getattr shows a file that is no folder and no reparse point:
 * a system file may be an Interix FIFO, socket, device or symlink. */
static int interix_kind(ntfs_inode *ni, char *kind, PyObject **extra)
{
    *kind = 'f';
    if (!(ni->flags & FILE_ATTR_SYSTEM))
        return 0;
    ntfs_attr *na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0);
    if (na == NULL)
        return 0;                                   /* no data: a plain file */
    s64 size = na->data_size;
    if (!(ni->flags & FILE_ATTR_HIDDEN)) {
        if (size == 0)
            *kind = 'p';
        if (size == 1)
            *kind = 's';
    }
    if (size > (s64)sizeof(INTX_FILE_TYPES) && size <= (s64)INTX_MAX) {
        INTX_FILE *intx = malloc(size);
        if (intx == NULL) {
            ntfs_attr_close(na);
            errno = ENOMEM;
            return -1;
        }
        if (ntfs_attr_pread(na, 0, size, intx) != size) {
            free(intx);
            ntfs_attr_close(na);
            if (!errno)
                errno = EIO;
            return -1;
        }
        if ((intx->magic == INTX_BLOCK_DEVICE || intx->magic == INTX_CHARACTER_DEVICE) &&
            size == (s64)offsetof(INTX_FILE, device_end)) {
            *kind = intx->magic == INTX_BLOCK_DEVICE ? 'b' : 'c';
            *extra = PyLong_FromUnsignedLongLong(
                makedev((unsigned int)le64_to_cpu(intx->major),
                        (unsigned int)le64_to_cpu(intx->minor)));
        }
        if (intx->magic == INTX_SYMBOLIC_LINK) {
            *kind = 'l';
            PyObject *target = utf8_name((const ntfschar *)((const u8 *)intx + offsetof(INTX_FILE, target)), (int)((size - offsetof(INTX_FILE, target))
                                                             / sizeof(ntfschar)));
            if (target == NULL) {
                free(intx);
                ntfs_attr_close(na);
                if (!PyErr_Occurred())
                    errno = EILSEQ;
                return -1;
            }
            *extra = target;
        }
        free(intx);
        if (PyErr_Occurred()) {
            ntfs_attr_close(na);
            return -1;
        }
    }
    ntfs_attr_close(na);
    return 0;
}

static int get_reparse(ntfs_inode *ni, char *value, size_t size)
{
    return ntfs_get_ntfs_reparse_data(ni, value, size);
}

static int get_object_id(ntfs_inode *ni, char *value, size_t size)
{
    return ntfs_get_ntfs_object_id(ni, value, size);
}

static int get_ea(ntfs_inode *ni, char *value, size_t size)
{
    return ntfs_get_ntfs_ea(ni, value, size);
}

/* The tuple listdir gives for the link named name (UTF-8) to mft_no in dir_ni. */
static PyObject *entry_of(ntfs_volume *vol, ntfs_inode *dir_ni, PyObject *name, u64 mft_no,
                          int name_type)
{
    errno = 0;
    ntfs_inode *ni = ntfs_inode_open(vol, (MFT_REF)mft_no);
    if (ni == NULL) {
        if (!errno)
            errno = EIO;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *acl = NULL, *reparse = NULL, *dos = NULL, *streams = NULL, *extra = NULL;
    PyObject *object_id = NULL, *ea = NULL;
    PyObject *result = NULL;
    char kind;
    u32 attrib = 0;
    if (ntfs_get_ntfs_attrib(ni, (char *)&attrib, sizeof(attrib)) != sizeof(attrib))
        goto done;
    if (ni->data_size < 0) {
        errno = EUCLEAN;
        goto done;
    }
    int links = links_of(ni);
    if (links < 0)
        goto done;
    if (ni->flags & FILE_ATTR_REPARSE_POINT) {
        kind = 'l';
        if ((reparse = read_value(ni, get_reparse, MAX_REPARSE, MAX_REPARSE)) == NULL)
            goto done;
    } else if (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) {
        kind = 'd';
    } else if (interix_kind(ni, &kind, &extra) < 0) {
        goto done;
    }
    if (reparse == NULL) {
        reparse = Py_None;
        Py_INCREF(reparse);
    }
    if ((acl = read_value(ni, get_descriptor, 4096, MAX_DESCRIPTOR)) == NULL)
        goto done;
    if ((object_id = read_value(ni, get_object_id, 64, 64)) == NULL)
        goto done;
    if ((ea = read_value(ni, get_ea, 4096, MAX_EA)) == NULL)
        goto done;
    /* the short name of this link, asked of ntfs-3g only where the folder lists one; ntfs-3g
     * gives none to an inode with other links (EMLINK), nor does diffimg yet */
    if (name_type == FILE_NAME_WIN32_AND_DOS && links == 1) {
        dos = name;
        Py_INCREF(dos);
    } else if (name_type == FILE_NAME_WIN32 && links == 1) {
        char buffer[64];
        errno = 0;
        int n = ntfs_get_ntfs_dos_name(ni, dir_ni, buffer, sizeof(buffer));
        dos = n > 0 && n <= (int)sizeof(buffer) ? PyBytes_FromStringAndSize(buffer, n)
                                                : (Py_INCREF(Py_None), Py_None);
    } else {
        dos = Py_None;
        Py_INCREF(dos);
    }
    if (dos == NULL)
        goto done;
    if ((streams = streams_of(ni)) == NULL)
        goto done;
    if (extra == NULL) {
        extra = Py_None;
        Py_INCREF(extra);
    }
    result = Py_BuildValue("(OKCiLLLLkOOOOOOO)", name, (unsigned long long)mft_no, kind, links,
                           (long long)(kind == 'd' ? 0 : ni->data_size),
                           (long long)sle64_to_cpu(ni->last_data_change_time),
                           (long long)sle64_to_cpu(ni->last_mft_change_time),
                           (long long)sle64_to_cpu(ni->creation_time), (unsigned long)attrib,
                           acl, reparse, object_id, ea, dos, streams, extra);
done:
    if (result == NULL && !PyErr_Occurred())
        PyErr_SetFromErrno(PyExc_OSError);
    Py_XDECREF(acl);
    Py_XDECREF(reparse);
    Py_XDECREF(object_id);
    Py_XDECREF(ea);
    Py_XDECREF(dos);
    Py_XDECREF(streams);
    Py_XDECREF(extra);
    ntfs_inode_close(ni);
    return result;
}

static PyObject *Volume_listdir(VolumeObject *self, PyObject *args)
{
    unsigned long long mft_no;
    if (!PyArg_ParseTuple(args, "K", &mft_no) || check_open(self) < 0)
        return NULL;
    ntfs_inode *dir_ni = ntfs_inode_open(self->vol, (MFT_REF)mft_no);
    if (dir_ni == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (!(dir_ni->mrec->flags & MFT_RECORD_IS_DIRECTORY)) {
        ntfs_inode_close(dir_ni);
        errno = ENOTDIR;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Listing listing = {PyList_New(0), 0, 0};
    if (listing.names == NULL) {
        ntfs_inode_close(dir_ni);
        return NULL;
    }
    s64 pos = 0;
    errno = 0;
    int failed = ntfs_readdir(dir_ni, &pos, &listing, collect);
    if (listing.failed || failed) {
        if (!PyErr_Occurred())
            PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(listing.names);
        ntfs_inode_close(dir_ni);
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(listing.names);
    PyObject *entries = PyList_New(count);
    if (entries == NULL)
        goto failed;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(listing.names, i);
        PyObject *entry = entry_of(self->vol, dir_ni, PyTuple_GET_ITEM(item, 0),
                                   PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(item, 1)),
                                   (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 2)));
        if (entry == NULL) {
            /* name the entry: the caller turns this into a message with its path */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (value != NULL)
                PyObject_SetAttrString(value, "ntfs_name", PyTuple_GET_ITEM(item, 0));
            PyErr_Restore(type, value, tb);
            Py_DECREF(entries);
            goto failed;
        }
        PyList_SET_ITEM(entries, i, entry);
    }
    Py_DECREF(listing.names);
    ntfs_inode_close(dir_ni);
    return Py_BuildValue("(Ni)", entries, listing.bad_names);
failed:
    Py_DECREF(listing.names);
    ntfs_inode_close(dir_ni);
    return NULL;
}

static PyObject *Volume_stat_root(VolumeObject *self, PyObject *unused)
{
    if (check_open(self) < 0)
        return NULL;
    PyObject *name = PyBytes_FromStringAndSize("", 0);
    if (name == NULL)
        return NULL;
    PyObject *entry = entry_of(self->vol, NULL, name, FILE_root, FILE_NAME_POSIX);
    Py_DECREF(name);
    return entry;
}

/* The MFT record number of the entry at path (UTF-8, from the root, '/'-separated). */
static PyObject *Volume_lookup(VolumeObject *self, PyObject *args)
{
    const char *path;
    if (!PyArg_ParseTuple(args, "y", &path) || check_open(self) < 0)
        return NULL;
    errno = 0;
    ntfs_inode *ni = ntfs_pathname_to_inode(self->vol, NULL, path);
    if (ni == NULL) {
        if (!errno)
            errno = ENOENT;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    unsigned long long mft_no = ni->mft_no;
    ntfs_inode_close(ni);
    return PyLong_FromUnsignedLongLong(mft_no);
}

/* ---- content ---- */

/* The $DATA attribute of mft_no named stream (UTF-8; None: the unnamed one), opened. */
int open_data(ntfs_volume *vol, unsigned long long mft_no, PyObject *stream,
                     ntfs_inode **ni_out, ntfs_attr **na_out)
{
    ntfschar *uname = NULL;
    int ulen = 0;
    if (stream != Py_None) {
        if (!PyBytes_Check(stream)) {
            PyErr_SetString(PyExc_TypeError, "a stream name is bytes or None");
            return -1;
        }
        ulen = ntfs_mbstoucs(PyBytes_AS_STRING(stream), &uname);
        if (ulen <= 0) {
            free(uname);
            errno = EINVAL;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    ntfs_inode *ni = ntfs_inode_open(vol, (MFT_REF)mft_no);
    if (ni == NULL) {
        free(uname);
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    ntfs_attr *na = ntfs_attr_open(ni, AT_DATA, uname ? uname : AT_UNNAMED, ulen);
    free(uname);
    if (na == NULL) {
        int code = errno;
        ntfs_inode_close(ni);
        errno = code;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    /* a size no data can have: below 0, or past what a file neither sparse nor compressed
     * has allocated (a crafted record claiming terabytes would be read as zeros) */
    if (na->data_size < 0 ||
        (NAttrNonResident(na) && !(na->data_flags & (ATTR_IS_SPARSE | ATTR_COMPRESSION_MASK))
         && na->data_size > na->allocated_size)) {
        ntfs_attr_close(na);
        ntfs_inode_close(ni);
        errno = EUCLEAN;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    *ni_out = ni;
    *na_out = na;
    return 0;
}

/* Of na's data: whether a hole lies within it (*some), and whether it is nothing but holes
 * or zeros (*only: the unnamed data of a file Windows compressed, WOF, is so; a resident value
 * is read into buffer for that, and taken as data when buffer is NULL). 0, or -1 and errno. */
static int holes_in(ntfs_attr *na, unsigned char *buffer, int *some, int *only)
{
    *some = 0;
    *only = 1;
    if (!NAttrNonResident(na)) {            /* (a resident value is a few hundred bytes) */
        s64 size = na->data_size;
        if (buffer == NULL || size > CHUNK) {
            *only = size == 0;
            return 0;
        }
        if (ntfs_attr_pread(na, 0, size, buffer) != size) {
            if (!errno)
                errno = EIO;
            return -1;
        }
        for (s64 i = 0; i < size && *only; i++)
            *only = buffer[i] == 0;
        return 0;
    }
    if (na->data_flags & ATTR_COMPRESSION_MASK) {
        *only = 0;
        return 0;
    }
    if (!(na->data_flags & ATTR_IS_SPARSE)) {
        *only = na->initialized_size == 0;      /* (past it, every byte reads as zero) */
        return 0;
    }
    if (ntfs_attr_map_whole_runlist(na) < 0)
        return -1;
    ntfs_volume *vol = na->ni->vol;
    s64 end = (na->data_size + vol->cluster_size - 1) >> vol->cluster_size_bits;
    s64 written = (na->initialized_size + vol->cluster_size - 1) >> vol->cluster_size_bits;
    for (runlist_element *rl = na->rl; rl != NULL && rl->length && rl->vcn < end; rl++) {
        if (rl->lcn == LCN_HOLE)
            *some = 1;
        else if (rl->vcn < written)
            *only = 0;
    }
    return 0;
}

static PyObject *Volume_hash(VolumeObject *self, PyObject *args)
{
    unsigned long long mft_no;
    PyObject *stream;
    if (!PyArg_ParseTuple(args, "KO", &mft_no, &stream) || check_open(self) < 0)
        return NULL;
    ntfs_inode *ni;
    ntfs_attr *na;
    if (open_data(self->vol, mft_no, stream, &ni, &na) < 0)
        return NULL;
    XXH3_state_t *state = XXH3_createState();
    if (state == NULL) {
        ntfs_attr_close(na);
        ntfs_inode_close(ni);
        return PyErr_NoMemory();
    }
    XXH3_128bits_reset(state);
    s64 size = na->data_size, pos = 0;
    int holes = 0;
    while (pos < size) {
        s64 want = size - pos < CHUNK ? size - pos : CHUNK;
        errno = 0;
        s64 got = ntfs_attr_pread(na, pos, want, self->buffer);
        if (got <= 0) {
            if (!errno)
                errno = EIO;
            goto failed;
        }
        XXH3_128bits_update(state, self->buffer, (size_t)got);
        pos += got;
        if (PyErr_CheckSignals() < 0)
            goto failed_python;
    }
    int only;
    if (holes_in(na, NULL, &holes, &only) < 0)
        goto failed;
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state));
    XXH3_freeState(state);
    ntfs_attr_close(na);
    ntfs_inode_close(ni);
    return Py_BuildValue("(Ly#O)", (long long)size, (const char *)canonical.digest,
                         (Py_ssize_t)sizeof(canonical.digest), holes ? Py_True : Py_False);
failed:
    PyErr_SetFromErrno(PyExc_OSError);
failed_python:
    XXH3_freeState(state);
    ntfs_attr_close(na);
    ntfs_inode_close(ni);
    return NULL;
}

/* (has holes, nothing but holes or zeros) of a $DATA, its content unread: a file taken on its
 * size and mtime; a reparse point's unnamed data. */
static PyObject *Volume_holes(VolumeObject *self, PyObject *args)
{
    unsigned long long mft_no;
    PyObject *stream;
    if (!PyArg_ParseTuple(args, "KO", &mft_no, &stream) || check_open(self) < 0)
        return NULL;
    ntfs_inode *ni;
    ntfs_attr *na;
    if (open_data(self->vol, mft_no, stream, &ni, &na) < 0)
        return NULL;
    errno = 0;
    int some, only;
    int failed = holes_in(na, self->buffer, &some, &only) < 0;
    ntfs_attr_close(na);
    ntfs_inode_close(ni);
    if (failed)
        return PyErr_SetFromErrno(PyExc_OSError);
    return Py_BuildValue("(OO)", some ? Py_True : Py_False, only ? Py_True : Py_False);
}

static PyObject *Volume_read(VolumeObject *self, PyObject *args)
{
    unsigned long long mft_no;
    PyObject *stream;
    if (!PyArg_ParseTuple(args, "KO", &mft_no, &stream) || check_open(self) < 0)
        return NULL;
    StreamObject *s = PyObject_New(StreamObject, &StreamType);
    if (s == NULL)
        return NULL;
    s->ni = NULL;
    s->na = NULL;
    s->pos = 0;
    s->volume = (PyObject *)self;
    Py_INCREF(self);
    if (open_data(self->vol, mft_no, stream, &s->ni, &s->na) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static void stream_close(StreamObject *s)
{
    if (s->na != NULL)
        ntfs_attr_close(s->na);
    if (s->ni != NULL)
        ntfs_inode_close(s->ni);
    s->na = NULL;
    s->ni = NULL;
}

static void Stream_dealloc(StreamObject *s)
{
    if (((VolumeObject *)s->volume)->vol != NULL)
        stream_close(s);
    Py_DECREF(s->volume);
    PyObject_Free(s);
}

static PyObject *Stream_close(StreamObject *s, PyObject *unused)
{
    if (((VolumeObject *)s->volume)->vol != NULL)
        stream_close(s);
    Py_RETURN_NONE;
}

static PyObject *Stream_readinto(StreamObject *s, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "w*", &view))
        return NULL;
    if (s->na == NULL || ((VolumeObject *)s->volume)->vol == NULL) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "the stream is closed");
        return NULL;
    }
    s64 left = s->na->data_size - s->pos;
    s64 want = left < (s64)view.len ? left : (s64)view.len;
    s64 got = 0;
    if (want > 0) {
        errno = 0;
        got = ntfs_attr_pread(s->na, s->pos, want, view.buf);
        if (got < 0) {
            PyBuffer_Release(&view);
            if (!errno)
                errno = EIO;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        s->pos += got;
    }
    PyBuffer_Release(&view);
    return PyLong_FromLongLong(got);
}

static PyObject *Stream_size(StreamObject *s, void *closure)
{
    return PyLong_FromLongLong(s->na != NULL ? s->na->data_size : 0);
}

static PyMethodDef Stream_methods[] = {
    {"readinto", (PyCFunction)Stream_readinto, METH_VARARGS, "Read into a buffer; the count."},
    {"close", (PyCFunction)Stream_close, METH_NOARGS, "Close the stream."},
    {NULL},
};

static PyGetSetDef Stream_getset[] = {
    {"size", (getter)Stream_size, NULL, "The stream's size in bytes.", NULL},
    {NULL},
};

PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "diffimg.windows._ntfsvol.Stream",
    .tp_basicsize = sizeof(StreamObject),
    .tp_dealloc = (destructor)Stream_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One $DATA attribute of an NTFS inode, read in order.",
    .tp_methods = Stream_methods,
    .tp_getset = Stream_getset,
};

static PyMethodDef reader_methods[] = {
    {"listdir", (PyCFunction)Volume_listdir, METH_VARARGS, "A folder's entries and values."},
    {"hash", (PyCFunction)Volume_hash, METH_VARARGS, "(size, digest, holes) of a $DATA."},
    {"read", (PyCFunction)Volume_read, METH_VARARGS, "A Stream reading a $DATA."},
    {"holes", (PyCFunction)Volume_holes, METH_VARARGS,
     "(has holes, nothing but holes) of a $DATA."},
    {"stat_root", (PyCFunction)Volume_stat_root, METH_NOARGS, "The root's values."},
    {"lookup", (PyCFunction)Volume_lookup, METH_VARARGS, "The MFT number of a path."},
    {"close", (PyCFunction)Volume_close, METH_NOARGS, "Close the volume."},
    {NULL},
};

static PyTypeObject VolumeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "diffimg.windows._ntfsvol.Volume",
    .tp_basicsize = sizeof(VolumeObject),
    .tp_dealloc = (destructor)Volume_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An NTFS volume opened through libntfs-3g: read-only, or writable.",

    .tp_init = (initproc)Volume_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "diffimg.windows._ntfsvol",
    "NTFS volumes read through libntfs-3g (see scan/ntfswalk.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__ntfsvol(void)
{
    /* the Volume's methods: the reader's, then the writer's (_ntfswrite.c) */
    static PyMethodDef methods[64];
    size_t n = 0;
    for (PyMethodDef *m = reader_methods; m->ml_name != NULL; m++)
        methods[n++] = *m;
    for (PyMethodDef *m = writer_methods; m->ml_name != NULL && n + 1 < 64; m++)
        methods[n++] = *m;
    VolumeType.tp_methods = methods;
    if (PyType_Ready(&VolumeType) < 0 || PyType_Ready(&StreamType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&VolumeType);
    if (PyModule_AddObject(m, "Volume", (PyObject *)&VolumeType) < 0) {
        Py_DECREF(&VolumeType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "ROOT", FILE_root);
    return m;
}

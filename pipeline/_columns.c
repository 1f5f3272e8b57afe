/* A parsed page's columns, the two steps of parsing and splitting it that would otherwise
 * load numpy into the daemon (about 15 MB: 4.5 MB of its own memory, 10 MB of library pages,
 * shared with the workers that load numpy too): `pipeline._columns`.
 *
 * `sentinel_holes(text)` copies a JSON array's text with each `NaN` replaced by `9e9` and each
 * `null` by `9e9 ` (the same lengths), and returns (the copy as a bytearray, the number
 * replaced); None when a `N` or `n` is not in such a word, or a word is not a whole element
 * (after `[` or `,`, before `,` or `]`). `fill_nan(values, sentinel)` sets every double of
 * the writable buffer `values` (read as doubles whatever its item type: the caller's
 * `array('d')`) that equals `sentinel` to NaN and returns how many it set.
 * `pipeline/onc/parsing.py` parses a big array with many holes this way: simdjson reads no
 * NaN or null as a number.
 *
 * `fixed_cuts(axis, marks)` cuts a packed time axis (`pipeline/timeaxis.py`: times of 24
 * ASCII characters, a newline after each but the last; its length is checked, its newlines
 * are the caller's `fixed_width`) at increasing `marks` (str of 24 ASCII characters, a
 * tuple; marks out of order raise ValueError): it returns [0, the number of rows before each mark, the number of rows],
 * each found as `bisect_left` finds it, or None when a row lies outside its part (before the
 * mark that opens it, or at or after the mark that closes it: times out of order). Rows of one
 * width sort as their bytes do, so comparing bytes is comparing times.
 *
 * Without this module (no C compiler at install) the same results come from numpy, the
 * reference the tests compare this with.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define TIME_WIDTH 24
#define ROW (TIME_WIDTH + 1)

static PyObject *
fill_nan(PyObject *self, PyObject *args)
{
    Py_buffer view;
    double sentinel;
    (void)self;
    if (!PyArg_ParseTuple(args, "w*d:fill_nan", &view, &sentinel)) {
        return NULL;
    }
    /* An empty array's buffer may be any static byte (CPython's `array` lends one). */
    if (view.len % (Py_ssize_t)sizeof(double) != 0
        || (view.len > 0 && (uintptr_t)view.buf % _Alignof(double) != 0)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "fill_nan wants an aligned buffer of doubles");
        return NULL;
    }
    double *values = view.buf;
    Py_ssize_t n = view.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t filled = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (values[i] == sentinel) {
            values[i] = NAN;
            filled++;
        }
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(filled);
}

static const struct {
    char letter;
    const char *word;
    const char *fill;
    Py_ssize_t length;
} HOLES[] = {{'N', "NaN", "9e9", 3}, {'n', "null", "9e9 ", 4}};

static PyObject *
sentinel_holes(PyObject *self, PyObject *text)
{
    Py_buffer view;
    (void)self;
    if (PyObject_GetBuffer(text, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    /* The copy is made before anything is read: the buffer is released at once. */
    PyObject *copy = PyByteArray_FromStringAndSize(view.buf, view.len);
    PyBuffer_Release(&view);
    if (copy == NULL) {
        return NULL;
    }
    char *bytes = PyByteArray_AS_STRING(copy);
    Py_ssize_t n = PyByteArray_GET_SIZE(copy);
    Py_ssize_t holes = 0;
    /* NaN words first, then nulls: the fills hold neither letter. */
    for (size_t kind = 0; kind < sizeof(HOLES) / sizeof(HOLES[0]); kind++) {
        Py_ssize_t length = HOLES[kind].length;
        Py_ssize_t from = 0;
        while (from < n) {
            char *hit = memchr(bytes + from, HOLES[kind].letter, (size_t)(n - from));
            if (hit == NULL) {
                break;
            }
            Py_ssize_t at = hit - bytes;
            if (at == 0 || at + length >= n
                || memcmp(bytes + at, HOLES[kind].word, (size_t)length) != 0
                || (bytes[at - 1] != '[' && bytes[at - 1] != ',')
                || (bytes[at + length] != ',' && bytes[at + length] != ']')) {
                Py_DECREF(copy);
                Py_RETURN_NONE;
            }
            memcpy(bytes + at, HOLES[kind].fill, (size_t)length);
            holes++;
            from = at + length;
        }
    }
    return Py_BuildValue("(Nn)", copy, holes);
}

/* The rows of [lo, hi) before `mark`: bisect_left over rows of `TIME_WIDTH` bytes. */
static Py_ssize_t
bisect_rows(const char *rows, Py_ssize_t lo, Py_ssize_t hi, const char *mark)
{
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (memcmp(rows + mid * ROW, mark, TIME_WIDTH) < 0) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

static PyObject *
fixed_cuts(PyObject *self, PyObject *args)
{
    PyObject *axis, *marks;
    (void)self;
    if (!PyArg_ParseTuple(args, "UO!:fixed_cuts", &axis, &PyTuple_Type, &marks)) {
        return NULL;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(axis);
    if (!PyUnicode_IS_ASCII(axis) || length == 0 || (length + 1) % ROW != 0) {
        PyErr_SetString(PyExc_ValueError, "fixed_cuts wants an axis of fixed-width ASCII times");
        return NULL;
    }
    const char *rows = (const char *)PyUnicode_1BYTE_DATA(axis);
    Py_ssize_t count = (length + 1) / ROW;
    Py_ssize_t n_marks = PyTuple_GET_SIZE(marks);
    const char **mark = PyMem_Calloc((size_t)n_marks + 1, sizeof(*mark));
    PyObject *cuts = PyList_New(n_marks + 2);
    Py_ssize_t *at = PyMem_Calloc((size_t)n_marks + 2, sizeof(*at));
    if (mark == NULL || cuts == NULL || at == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t m = 0; m < n_marks; m++) {
        PyObject *item = PyTuple_GET_ITEM(marks, m);
        if (!PyUnicode_Check(item) || !PyUnicode_IS_ASCII(item)
            || PyUnicode_GET_LENGTH(item) != TIME_WIDTH) {
            PyErr_SetString(PyExc_ValueError, "fixed_cuts wants marks of 24 ASCII characters");
            goto fail;
        }
        mark[m] = (const char *)PyUnicode_1BYTE_DATA(item);
        if (m > 0 && memcmp(mark[m - 1], mark[m], TIME_WIDTH) > 0) {
            PyErr_SetString(PyExc_ValueError, "fixed_cuts wants marks in increasing order");
            goto fail;
        }
    }
    at[0] = 0;
    at[n_marks + 1] = count;
    for (Py_ssize_t m = 0; m < n_marks; m++) {
        at[m + 1] = bisect_rows(rows, 0, count, mark[m]);
    }
    /* Part p is rows [at[p], at[p + 1]): at or after mark p - 1, before mark p. */
    for (Py_ssize_t p = 0; p <= n_marks; p++) {
        for (Py_ssize_t r = at[p]; r < at[p + 1]; r++) {
            const char *row = rows + r * ROW;
            if ((p > 0 && memcmp(row, mark[p - 1], TIME_WIDTH) < 0)
                || (p < n_marks && memcmp(row, mark[p], TIME_WIDTH) >= 0)) {
                PyMem_Free(mark);
                PyMem_Free(at);
                Py_DECREF(cuts);
                Py_RETURN_NONE;
            }
        }
    }
    for (Py_ssize_t p = 0; p < n_marks + 2; p++) {
        PyObject *number = PyLong_FromSsize_t(at[p]);
        if (number == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(cuts, p, number);
    }
    PyMem_Free(mark);
    PyMem_Free(at);
    return cuts;
fail:
    PyMem_Free(mark);
    PyMem_Free(at);
    Py_XDECREF(cuts);
    return NULL;
}

static PyMethodDef methods[] = {
    {"sentinel_holes", sentinel_holes, METH_O,
     "sentinel_holes(text) -> (bytearray, int) | None: NaN and null as 9e9, and how many."},
    {"fill_nan", fill_nan, METH_VARARGS,
     "fill_nan(values, sentinel) -> int: doubles equal to sentinel set to NaN; how many."},
    {"fixed_cuts", fixed_cuts, METH_VARARGS,
     "fixed_cuts(axis, marks) -> list[int] | None: a packed axis cut at marks, checked."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "pipeline._columns",
    "A parsed page's columns: NaNs put back, a time axis cut at marks (see _columns.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__columns(void)
{
    return PyModule_Create(&module);
}

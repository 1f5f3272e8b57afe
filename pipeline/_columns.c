/* A page's columns, parsed and split in the daemon without Python objects per value and
 * without numpy (about 15 MB in the daemon: 4.5 MB of its own memory, 10 MB of library pages,
 * shared with the workers that load numpy too): `pipeline._columns`.
 *
 * `pack_doubles(text)` parses a compact JSON array of numbers, `NaN` and null (a hole: NaN)
 * into native doubles (bytes, for `array('d').frombytes`), with the GIL released; None for
 * anything else, and for what it leaves to simdjson (`pipeline/onc/parsing.py`, whose parse
 * it gives bit for bit, tests/unit/test_columns.py): integers beyond 18 digits, results
 * outside a double's normal range, numbers strtod would get that are longer than 64 bytes.
 * A number of up to 19 digits (a fraction's leading zeros counted) whose mantissa is at most
 * 2^53 and whose decimal exponent is within +-22 is one exact double divided or multiplied
 * by an exact power of ten, which IEEE arithmetic rounds correctly (Clinger's fast path,
 * where doubles are evaluated as doubles: `FLT_EVAL_METHOD` 0, SSE2 on x86); any other goes
 * to strtod, which glibc rounds correctly (under a locale whose decimal point is not `.`,
 * strtod stops short and the array goes to simdjson: slower, the same doubles).
 *
 * `joined_times(text)` is `_joined_times_py` of parsing.py: an array of plain strings
 * (printable ASCII, no backslash, a quote only in a `","`) as (the strings joined by
 * newlines, how many); None otherwise; the bytes checked eight at a time, then copied between
 * quotes. `one_digit_flags(text)` is `_one_digit_flags_py`: `[1,1,9]` (JSON's whitespace
 * allowed) as the bytes 1, 1, 9; None unless every flag is one digit; a compact array is read
 * eight bytes (four flags) at a time.
 *
 * `sentinel_holes(text)` copies a JSON array's text with each `NaN` replaced by `9e9` and each
 * `null` by `9e9 ` (the same lengths), and returns (the copy as a bytearray, the number
 * replaced); None when a `N` or `n` is not in such a word, or a word is not a whole element
 * (after `[` or `,`, before `,` or `]`). `fill_nan(values, sentinel)` sets every double of
 * the writable buffer `values` (read as doubles whatever its item type: the caller's
 * `array('d')`) that equals `sentinel` to NaN and returns how many it set.
 * `pipeline/onc/parsing.py` parses a big array with many holes this way when `pack_doubles`
 * leaves it to simdjson, which reads no NaN or null as a number.
 *
 * `fixed_cuts(axis, marks)` cuts a packed time axis (`pipeline/timeaxis.py`: times of 24
 * ASCII characters, a newline after each but the last; its length is checked, its newlines
 * are the caller's `fixed_width`) at increasing `marks` (str of 24 ASCII characters, a
 * tuple; marks out of order raise ValueError): it returns [0, the number of rows before each
 * mark, the number of rows], each found as `bisect_left` finds it, or None when a row lies
 * outside its part (before the mark that opens it, or at or after the mark that closes it:
 * times out of order). Rows of one width sort as their bytes do, so comparing bytes is
 * comparing times.
 *
 * Without this module (no C compiler at install) the same results come from simdjson, ujson,
 * Python and numpy, the references the tests compare this with.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
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

/* ---- pack_doubles: a flat JSON array of numbers, NaN and null as packed doubles ---------- */

/* Powers of ten a double holds exactly (10^22 is the last: 5^22 < 2^53). */
static const double EXACT_TENS[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};
#define MAX_EXACT_TEN 22
#define MAX_DIGITS 19 /* decimal digits a uint64 always holds */
#define MAX_TOKEN 64  /* longest number handed to strtod; longer ones leave the array to simdjson */
/* Arrays this big are parsed with the GIL released (a day of a 1 Hz sensor is about 0.8 MB);
 * a small one is over before another thread could take the GIL, and getting it back may
 * wait a switch interval (5 ms). */
#define GIL_FREE_BYTES (64 * 1024)
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
#define FAST_PATH 1
#else
#define FAST_PATH 0 /* x87: a division in extended precision rounds twice; strtod instead */
#endif

static const uint64_t TENS[] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL,
};

static int
is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

/* Eight digit values (0 - 9, one a byte, the first in the lowest byte: bytes in text order
 * on a little-endian machine) as one number, in three multiplications instead of eight
 * dependent steps: pairs, then quads, then the eight (the SWAR method of simdjson's and
 * fast_float's `parse_eight_digits_unrolled`). */
static uint32_t
eight_digits(uint64_t values)
{
    values = (values * 10) + (values >> 8);
    values = (((values & 0x000000FF000000FFULL) * 0x000F424000000064ULL)
              + (((values >> 16) & 0x000000FF000000FFULL) * 0x0000271000000001ULL))
             >> 32;
    return (uint32_t)values;
}

/* The run of digits at `*p`, consumed: added to `*mantissa` while it holds `MAX_DIGITS`
 * (`*digits` counts them), else `*lost` is set and the rest only skipped. Returns how many
 * digits there were. Eight bytes at a time where eight remain (little-endian only). */
static inline __attribute__((always_inline)) Py_ssize_t
take_digits(const char **p, const char *end, uint64_t *mantissa, int *digits, int *lost)
{
    const char *at = *p;
    for (;;) {
        int run = 0;
        uint64_t chunk = 0;
#if PY_LITTLE_ENDIAN
        if (end - at >= 8) {
            uint64_t word;
            memcpy(&word, at, 8);
            uint64_t values = word ^ 0x3030303030303030ULL; /* a digit byte becomes 0 - 9 */
            /* A byte's high bit set where it is no digit (10 + 0x76 carries into bit 7); a
             * carry out of a byte only reaches bytes after the first non-digit. */
            uint64_t others = ((values + 0x7676767676767676ULL) | values) & 0x8080808080808080ULL;
            run = others ? __builtin_ctzll(others) >> 3 : 8;
            if (run > 0) {
                chunk = eight_digits(run == 8 ? values : values << (8 * (8 - run)));
            }
        }
        else
#endif
        {
            for (; run < 8 && at + run < end && is_digit(at[run]); run++) {
                chunk = chunk * 10 + (uint64_t)(at[run] - '0');
            }
        }
        if (run > 0 && !*lost) {
            if (*digits + run <= MAX_DIGITS) {
                *mantissa = *mantissa * TENS[run] + chunk;
                *digits += run;
            }
            else {
                *lost = 1;
            }
        }
        at += run;
        if (run < 8) {
            break;
        }
    }
    Py_ssize_t taken = at - *p;
    *p = at;
    return taken;
}

/* One JSON number at `p`: 1 with its double in `*out` and `*next` past it, 0 when it is not
 * one this parser takes (not JSON's grammar, an integer beyond 18 digits, a result out of a
 * double's normal range): the whole array then goes to the parsers after this one. */
static inline __attribute__((always_inline)) int
parse_number(const char *p, const char *end, double *out, const char **next)
{
    const char *start = p;
    int negative = 0, integral = 1, lost = 0, digits = 0, exponent = 0;
    uint64_t mantissa = 0;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p == end) {
        return 0;
    }
    if (*p == '0') {
        p++; /* JSON: no digit may follow a leading zero */
    }
    else if (*p >= '1' && *p <= '9') {
        take_digits(&p, end, &mantissa, &digits, &lost);
    }
    else {
        return 0;
    }
    if (p < end && *p == '.') {
        integral = 0;
        p++;
        /* The fraction's digits, leading zeros included (a mantissa of up to 19 digits). */
        int before = digits;
        if (take_digits(&p, end, &mantissa, &digits, &lost) == 0) {
            return 0; /* `1.` */
        }
        exponent -= digits - before;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        int minus = 0, value = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            minus = *p == '-';
            p++;
        }
        const char *first = p;
        for (; p < end && is_digit(*p); p++) {
            if (value < 100000) {
                value = value * 10 + (*p - '0');
            }
        }
        if (p == first) {
            return 0;
        }
        exponent += minus ? -value : value;
    }
    *next = p;
    if (integral) {
        /* simdjson reads an integer as int64 and converts it: `-0` is 0.0, not -0.0. */
        if (lost || digits > 18) {
            return 0;
        }
        int64_t whole = negative ? -(int64_t)mantissa : (int64_t)mantissa;
        *out = (double)whole;
        return 1;
    }
    /* Both operands exact, one IEEE operation: correctly rounded (Clinger's fast path). */
    if (FAST_PATH && !lost && mantissa <= ((uint64_t)1 << 53) && exponent >= -MAX_EXACT_TEN
        && exponent <= MAX_EXACT_TEN) {
        double value = (double)mantissa;
        value = exponent < 0 ? value / EXACT_TENS[-exponent] : value * EXACT_TENS[exponent];
        *out = negative ? -value : value;
        return 1;
    }
    /* glibc's strtod rounds correctly too, in the "C" locale's grammar, which holds JSON's.
     * Anything it stops short of, or takes out of the normal range, is left to simdjson. */
    Py_ssize_t length = p - start;
    char token[MAX_TOKEN + 1];
    if (length > MAX_TOKEN) {
        return 0;
    }
    memcpy(token, start, (size_t)length);
    token[length] = '\0';
    char *stop = NULL;
    errno = 0;
    double value = strtod(token, &stop);
    if (stop != token + length || errno == ERANGE || !isfinite(value)
        || (value != 0.0 && fabs(value) < DBL_MIN)) {
        return 0;
    }
    *out = value;
    return 1;
}

/* The elements of `text` (`[` ... `]`, `count` of them) into `out`; 0 when one is not a
 * number, `NaN` or null, or the text is not a flat, compact array of exactly `count`. */
static int
parse_elements(const char *p, const char *end, double *out, Py_ssize_t count)
{
    if (p == end || *p++ != '[') {
        return 0;
    }
    if (count == 0) {
        return p + 1 == end && *p == ']';
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (p == end) {
            return 0; /* `[` or a `,` last (the buffer may hold nothing after it) */
        }
        if (*p == 'N' && end - p >= 3 && memcmp(p, "NaN", 3) == 0) {
            out[i] = NAN;
            p += 3;
        }
        else if (*p == 'n' && end - p >= 4 && memcmp(p, "null", 4) == 0) {
            out[i] = NAN;
            p += 4;
        }
        else if (!parse_number(p, end, &out[i], &p)) {
            return 0;
        }
        if (p == end || *p != (i + 1 < count ? ',' : ']')) {
            return 0;
        }
        p++;
    }
    return p == end;
}

/* How many bytes of [p, end) are `byte`: eight at a time (a zero byte of `word ^ byte * 8`
 * is the one whose high bit survives, exactly: no carry crosses bytes). */
static Py_ssize_t
count_byte(const char *p, const char *end, char byte)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x7F7F7F7F7F7F7F7FULL;
    const uint64_t spread = ones * (unsigned char)byte;
    Py_ssize_t count = 0;
    for (; end - p >= 8; p += 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= spread;
        count += __builtin_popcountll(~(((word & highs) + highs) | word | highs));
    }
    for (; p < end; p++) {
        count += *p == byte;
    }
    return count;
}

static PyObject *
pack_doubles(PyObject *self, PyObject *text)
{
    Py_buffer view;
    (void)self;
    if (PyObject_GetBuffer(text, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const char *start = view.buf, *end = start + view.len;
    /* One element per comma, and one more unless the array is empty (`[]`); an element and
     * its separator take at least two bytes, so a text of commas allocates nothing. */
    Py_ssize_t count = count_byte(start, end, ',');
    if (!(view.len == 2 && count == 0)) {
        count++;
    }
    if (count > view.len / 2) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    PyObject *packed = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(double));
    if (packed == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int parsed;
    double *out = (double *)PyBytes_AS_STRING(packed);
    if (view.len < GIL_FREE_BYTES) {
        parsed = parse_elements(start, end, out, count);
    }
    else {
        /* The text is ours until released (`bytes`, or the caller's own `bytearray`). */
        Py_BEGIN_ALLOW_THREADS
        parsed = parse_elements(start, end, out, count);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    if (!parsed) {
        Py_DECREF(packed);
        Py_RETURN_NONE;
    }
    return packed;
}

/* ---- joined_times: `["a","b"]` as ("a\nb", 2) ------------------------------------------- */

/* Whether [p, end) is printable ASCII (0x20 - 0x7E) without a backslash: what a JSON string
 * holds as it is written. Eight bytes at a time, each test setting a byte's bit 7: a byte
 * under 0x20 borrows into it (a borrow only passes on from such a byte), 0x80 and up have it
 * (`| word`), 0x7F gets it by adding 1 (0xFF's carry lands past a byte already caught), and
 * a backslash is a zero byte of `word ^ '\\' * 8`. */
static int
plain_ascii(const char *p, const char *end)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    for (; end - p >= 8; p += 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        uint64_t slashes = word ^ (ones * '\\');
        if ((((word - ones * 0x20) & ~word) | word | (word + ones)
             | ((slashes - ones) & ~slashes))
            & highs) {
            return 0;
        }
    }
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x7f || c == '\\') {
            return 0;
        }
    }
    return 1;
}

static PyObject *
joined_times(PyObject *self, PyObject *text)
{
    Py_buffer view;
    (void)self;
    if (PyObject_GetBuffer(text, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *bytes = view.buf;
    Py_ssize_t n = view.len;
    if (n == 2 && memcmp(bytes, "[]", 2) == 0) {
        PyBuffer_Release(&view);
        return Py_BuildValue("(sn)", "", (Py_ssize_t)0);
    }
    if (n < 4 || memcmp(bytes, "[\"", 2) != 0 || memcmp(bytes + n - 2, "\"]", 2) != 0) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    const char *inner = (const char *)bytes + 2, *end = (const char *)bytes + n - 2;
    /* Printable ASCII but the backslash; each quote the first or second of a `","`, which
     * the copy below checks (a stray one fails there, before its room is written). */
    Py_ssize_t quotes = count_byte(inner, end, '"');
    if (!plain_ascii(inner, end) || quotes % 2 != 0) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    PyObject *axis = PyUnicode_New((end - inner) - quotes, 127);
    if (axis == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(axis);
    const char *at = inner, *quote;
    while ((quote = memchr(at, '"', (size_t)(end - at))) != NULL) {
        if (end - quote < 3 || quote[1] != ',' || quote[2] != '"') {
            PyBuffer_Release(&view);
            Py_DECREF(axis);
            Py_RETURN_NONE;
        }
        memcpy(out, at, (size_t)(quote - at));
        out += quote - at;
        *out++ = '\n';
        at = quote + 3;
    }
    memcpy(out, at, (size_t)(end - at));
    Py_ssize_t separators = quotes / 2;
    PyBuffer_Release(&view);
    return Py_BuildValue("(Nn)", axis, separators + 1);
}

/* ---- one_digit_flags: `[1,1,9]` as the bytes 1, 1, 9 -------------------------------------- */

/* `_one_digit_flags_py` of parsing.py on bytes [lo, hi) of the text (its `[` and `]` left out):
 * JSON's whitespace dropped, then a digit at every even place and a comma at every odd one,
 * an odd count of them; the digits' values into `out`. -1 when they are not that, else how
 * many. Eight bytes at a time (four digits and four commas, the text's own parity) while
 * they are compact; from the first word that is not, byte by byte. */
static Py_ssize_t
flag_digits(const char *text, Py_ssize_t lo, Py_ssize_t hi, unsigned char *out)
{
    Py_ssize_t i = lo, count = 0, placed = 0;
#if PY_LITTLE_ENDIAN
    for (; hi - i >= 8; i += 8) {
        uint64_t word;
        memcpy(&word, text + i, 8);
        /* `d,d,d,d,` becomes 0-9 in the even bytes and 0 in the odd ones. */
        uint64_t values = word ^ 0x2C302C302C302C30ULL;
        uint64_t evens = values & 0x00FF00FF00FF00FFULL;
        /* An even byte of 10 or more sets its bit 7 (a digit's value + 0x76 stays under
         * 0x80; 0x80 and more have it already); the carry of one lands in an odd byte. */
        if ((values & 0xFF00FF00FF00FF00ULL)
            || (((evens + 0x0076007600760076ULL) | evens) & 0x0080008000800080ULL)) {
            break;
        }
        evens = (evens | (evens >> 8)) & 0x0000FFFF0000FFFFULL;
        evens = (evens | (evens >> 16)) & 0x00000000FFFFFFFFULL;
        uint32_t four = (uint32_t)evens;
        memcpy(out + placed, &four, 4);
        placed += 4;
        count += 8;
    }
#endif
    for (; i < hi; i++) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        }
        if (count % 2 == 0) {
            if (!is_digit(c)) {
                return -1;
            }
            out[placed++] = (unsigned char)(c - '0');
        }
        else if (c != ',') {
            return -1;
        }
        count++;
    }
    if (count > 0 && count % 2 == 0) {
        return -1; /* a comma last */
    }
    return placed;
}

static PyObject *
one_digit_flags(PyObject *self, PyObject *text)
{
    Py_buffer view;
    (void)self;
    if (PyObject_GetBuffer(text, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    /* text[1:-1], as Python slices it. */
    Py_ssize_t lo = 1, hi = view.len - 1;
    if (hi < lo) {
        hi = lo;
    }
    PyObject *flags = PyBytes_FromStringAndSize(NULL, (hi - lo + 1) / 2);
    if (flags == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t placed =
        flag_digits(view.buf, lo, hi, (unsigned char *)PyBytes_AS_STRING(flags));
    PyBuffer_Release(&view);
    if (placed < 0) {
        Py_DECREF(flags);
        Py_RETURN_NONE;
    }
    if (placed != PyBytes_GET_SIZE(flags) && _PyBytes_Resize(&flags, placed) < 0) {
        return NULL;
    }
    return flags;
}

static PyMethodDef methods[] = {
    {"one_digit_flags", one_digit_flags, METH_O,
     "one_digit_flags(text) -> bytes | None: `[1,1,9]` as the bytes 1, 1, 9."},
    {"pack_doubles", pack_doubles, METH_O,
     "pack_doubles(text) -> bytes | None: a flat JSON array of numbers as native doubles."},
    {"joined_times", joined_times, METH_O,
     "joined_times(text) -> (str, int) | None: an array of plain strings joined by newlines."},
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
    "A page's columns: numbers and times parsed, NaNs put back, an axis cut (see _columns.c).",
    -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__columns(void)
{
    return PyModule_Create(&module);
}

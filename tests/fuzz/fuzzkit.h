/*
 * What several fuzzing harnesses need alike (header-only): a check that
 * crashes the run with a message when a property of the code under test
 * does not hold (libFuzzer then keeps the input as a crash), a way to make
 * AddressSanitizer look at every byte of a slice the code handed out, an
 * independent UTF-8 validator, and a scratch file per process for the
 * harnesses whose code under test reads files.
 */
#ifndef HERALD_FUZZKIT_H
#define HERALD_FUZZKIT_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property of the code under test: on failure, say which and abort. */
#define FUZZ_CHECK(cond)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond,        \
                    __FILE__, __LINE__);                                     \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* Reads every byte of [p, p + n): a slice that points outside live memory
 * is an ASan report here rather than a silent pass. */
static inline unsigned fuzz_touch(const void *p, size_t n)
{
    const volatile unsigned char *s = p;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += s[i];
    return sum;
}

/* Whether two byte ranges hold the same bytes. */
static inline int fuzz_same(const void *a, size_t an, const void *b,
                            size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points above
 * U+10FFFF), written apart from the codec's own validator so that one can
 * be checked against the other. */
static inline int fuzz_utf8(const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; }
        else return 0;
        if (n - i < len)
            return 0;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
            (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

/* A path of this process's own in a scratch directory, for code that
 * reads a file; `tag` tells the harnesses apart. TMPDIR, else /dev/shm
 * (memory: millions of runs each write a file), else /tmp. */
static inline const char *fuzz_path(const char *tag)
{
    static char path[512];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        if (!dir || !dir[0])
            dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(path, sizeof path, "%s/herald-fuzz-%s-%d", dir, tag,
                 (int)getpid());
    }
    return path;
}

/* Writes the n bytes at p as the whole content of path. */
static inline void fuzz_write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        FUZZ_CHECK(w > 0);
        s += w;
        n -= (size_t)w;
    }
    close(fd);
}

#endif

/*
 * A request path of the static site, turned into a file name relative to
 * the site's directory, or refused; pure logic (no I/O), so every rule is
 * reached by a unit test. The path is percent-decoded first and the
 * decoded name is checked, so "%2e%2e" is refused like "..":
 *   - a bad %-escape is malformed (400);
 *   - a decoded NUL, backslash or control character, an escaped '/'
 *     ("%2F": a name with a slash in it cannot be a file of the tree), an
 *     empty segment ("//"), and any segment that starts with '.' ("." and
 *     ".." but also ".git", ".env": hidden files are not published) are
 *     refused (404: nothing there to serve);
 *   - a path that ends in '/' names that folder's index.html.
 * What comes out has no leading '/', no "." or ".." segment and no empty
 * one; opening it beneath the directory (web/site.c) is the second guard.
 */
#ifndef HERALD_WEB_PATH_H
#define HERALD_WEB_PATH_H

#include <stddef.h>

/* Longest file name served, relative to the directory. */
#define WEB_PATH_MAX 1024

typedef enum web_path_status {
    WEB_PATH_OK = 0,
    WEB_PATH_MALFORMED = -1,  /* a bad %-escape: 400 */
    WEB_PATH_REFUSED = -2,    /* cannot name a file of the site: 404 */
} web_path_status;

/* raw: the request's path as sent (before '?'), len bytes. out (cap
 * bytes, NUL-terminated) gets the relative file name. */
web_path_status web_path_parse(const char *raw, size_t len, char *out,
                               size_t cap);

#endif

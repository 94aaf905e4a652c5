/* text.h - the one check of text a caller gives (names, notes, reasons...),
 * used by every service, after fd_wire_check has made sure it is UTF-8
 * without NUL bytes.
 *
 * Refused, with -FD_EINVAL naming the field:
 *   - C0 controls and DEL (U+0000-U+001F, U+007F) and C1 controls
 *     (U+0080-U+009F): line breaks, escapes and terminal tricks;
 *   - bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069),
 *     which make a portal show text in another order than it is stored
 *     ("admin" that reads as "nimda", a file name with a fake extension);
 *   - a non-empty value made only of blanks (spaces of any kind, zero-width
 *     characters): it looks empty in a portal but is not;
 *   - more than max or fewer than min characters (code points).
 * Names (fd_check_name) are also refused with leading or trailing blanks:
 * never silently trimmed, since the caller would not get back what it sent. */
#ifndef FD_TEXT_H
#define FD_TEXT_H

#include <stdbool.h>
#include <stdint.h>
#include "fd/status.h"

/* Free text (notes, reasons, a player's user agent). */
int fd_check_text(const char *field, const char *s, int min, int max, fd_err_t *err) FD_MUSTCHECK;
/* A name or display field shown as a label (tenant, reseller, package, node...). */
int fd_check_name(const char *field, const char *s, int min, int max, fd_err_t *err) FD_MUSTCHECK;

/* Whether code point c is a blank: Unicode White_Space or a zero-width
 * character (U+200B-U+200D, U+2060, U+FEFF, U+180E). */
bool fd_text_blank(uint32_t c);

#endif

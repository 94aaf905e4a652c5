/* hostname.h - host names as players type them, made into the one form the
 * platform stores and compares: authd's brand host names (RequestHost) and
 * the Host header edged finds a brand from. Pure: no allocation kept, no
 * global state (libidn2 for internationalised names), any thread.
 *
 * fd_hostname_normalize, in order:
 *   - refuses input over FD_HOSTNAME_INPUT_MAX bytes (before looking
 *     further), empty input, and bytes that are not UTF-8;
 *   - refuses IP literals: "[v6]" with or without a port, bare IPv6, IPv4
 *     in any form inet_aton reads ("127.0.0.1", "127.1", "0x7f.1",
 *     "2130706433"), and any name whose last label is all digits;
 *   - drops a port (":8080": up to 5 digits, at most 65535; an empty one,
 *     "example.com:", as RFC 3986 allows) and then one trailing dot;
 *   - lower-cases ASCII labels; a label with non-ASCII characters (a
 *     U-label, UTF-8) or starting with "xn--" goes through libidn2
 *     (IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL: UTS #46 mapping, so
 *     "Bücher" and "BÜCHER" are both "xn--bcher-kva", and "ß" stays "ß");
 *     an invalid A-label ("xn--zz") is refused;
 *   - checks the result: at most 253 characters, labels of 1 to 63 of a-z,
 *     0-9 and '-', not starting or ending with '-'. ASCII labels are LDH
 *     labels (RFC 1123): "ab--cd" is accepted, as DNS does.
 * A single label ("localhost") is a host name here; authd's RequestHost
 * asks brand names for a dot itself.
 *
 * Every refusal is -FD_EINVAL with err set to "<field>: <what is wrong>";
 * messages quote at most a short part of the input, never all of it. */
#ifndef FD_HOSTNAME_H
#define FD_HOSTNAME_H

#include <stdbool.h>
#include <stddef.h>
#include "fd/status.h"

#define FD_HOSTNAME_MAX 253            /* characters of a normalised name */
#define FD_HOSTNAME_SIZE (FD_HOSTNAME_MAX + 1)
#define FD_HOSTNAME_INPUT_MAX 1024     /* bytes of input looked at */

/* Normalises in (a NUL-terminated string of any bytes) into out (outsz
 * bytes, FD_HOSTNAME_SIZE is always enough; the caller's buffer). 0, or
 * -FD_EINVAL naming field (out is then ""), -FD_ERANGE when outsz is too
 * small for the result, -FD_EEXHAUSTED when libidn2 ran out of memory. */
int fd_hostname_normalize(const char *field, const char *in, char *out, size_t outsz, fd_err_t *err) FD_MUSTCHECK;

/* Whether in is an IP literal (as fd_hostname_normalize refuses: IPv4 in
 * inet_aton's forms, IPv6 bare or in brackets, either with a port, IPv4
 * also with one trailing dot): 1 with
 * its canonical text in out (inet_ntop's: "127.0.0.1", "::1"; no brackets,
 * no port), 0 when it is not one (out ""). out holds at least 46 bytes
 * (INET6_ADDRSTRLEN). */
int fd_hostname_ip(const char *in, char *out, size_t outsz);

/* Whether host is name itself or a name below it ("a.b.example" is below
 * "b.example"; "ab.example" is not). Both normalised. */
bool fd_hostname_within(const char *host, const char *name);

/* Walks a comma-separated list of host names such as
 * FRONTDESK_PLATFORM_HOSTS ("localhost, panel.example,127.0.0.1"): spaces
 * around an entry are dropped, empty entries skipped. Each call takes the
 * next entry from *cursor (advanced past it) into out (outsz bytes: at least
 * FD_HOSTNAME_SIZE), normalised, or as fd_hostname_ip's canonical text with
 * *is_ip set. Returns 1 with an entry, 0 at the end of the list, or
 * -FD_EINVAL with err naming var and the entry. */
int fd_hostname_list_next(const char **cursor, const char *var, char *out, size_t outsz, bool *is_ip,
                          fd_err_t *err) FD_MUSTCHECK;

#endif

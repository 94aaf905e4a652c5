/* wire.h - checks on a request's raw protobuf bytes, before unpacking.
 *
 * protobuf-c accepts string fields that are not UTF-8 and cuts them at an
 * embedded NUL ("alice\0evil" unpacks as "alice"). fd_wire_check walks the
 * encoded message with its descriptor and refuses both, naming the field. */
#ifndef FD_WIRE_H
#define FD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "fd/status.h"

/* Nesting deeper than this is refused (protobuf-c would recurse without bound). */
#define FD_WIRE_MAX_DEPTH 32

/* 0 if every string field (at any depth) is valid UTF-8 without NUL bytes and
 * the encoding is well formed; else -FD_EINVAL with err naming the field
 * ("reseller.display_name: not valid UTF-8"). */
int fd_wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                  fd_err_t *err) FD_MUSTCHECK;

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
bool fd_utf8_valid(const uint8_t *s, size_t len);

/* fd_check_text and fd_check_name (text a caller gives) are in fd/text.h. */
#include "fd/text.h"

#endif

/* wire.c - walks encoded protobuf messages to check their string fields. */
#include <string.h>
#include "fd/wire.h"

bool fd_utf8_valid(const uint8_t *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t cp;
		if (c >= 0xC2 && c <= 0xDF) {
			n = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false; /* continuation byte, C0/C1 overlong lead, or > F4 */
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return false;
		uint8_t b = *(*p)++;
		v |= (uint64_t)(b & 0x7F) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

/* path: the field names so far, for the message ("a.b"). */
static int check(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                 int depth, char *path, size_t pathlen, fd_err_t *err)
{
	if (depth > FD_WIRE_MAX_DEPTH)
		return fd_err_set(err, FD_EINVAL, "request: messages nested more than %d deep",
		                  FD_WIRE_MAX_DEPTH);
	while (p < end) {
		uint64_t key;
		if (!read_varint(&p, end, &key))
			goto malformed;
		uint32_t num = (uint32_t)(key >> 3);
		if (num == 0 || key >> 32)
			goto malformed;
		const ProtobufCFieldDescriptor *f =
			desc ? protobuf_c_message_descriptor_get_field(desc, num) : NULL;
		uint64_t n;
		switch (key & 7) {
		case 0:
			if (!read_varint(&p, end, &n))
				goto malformed;
			break;
		case 1:
			if (end - p < 8)
				goto malformed;
			p += 8;
			break;
		case 5:
			if (end - p < 4)
				goto malformed;
			p += 4;
			break;
		case 2: {
			if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p))
				goto malformed;
			const uint8_t *v = p;
			p += n;
			if (!f)
				break; /* unknown field: protobuf-c keeps it as bytes */
			size_t plen = pathlen;
			if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE) {
				size_t fl = strlen(f->name);
				if (pathlen + fl + 2 < 256) {
					if (pathlen)
						path[plen++] = '.';
					memcpy(path + plen, f->name, fl + 1);
					plen += fl;
				}
			}
			if (f->type == PROTOBUF_C_TYPE_STRING) {
				if (memchr(v, 0, n))
					return fd_err_set(err, FD_EINVAL, "%s: contains a NUL byte", path);
				if (!fd_utf8_valid(v, n))
					return fd_err_set(err, FD_EINVAL, "%s: not valid UTF-8", path);
			} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
				int rc = check(f->descriptor, v, v + n, depth + 1, path, plen, err);
				if (rc < 0)
					return rc;
			}
			path[pathlen] = '\0';
			break;
		}
		default: /* groups (3, 4) and invalid wire types */
			goto malformed;
		}
	}
	return 0;
malformed:
	return fd_err_set(err, FD_EINVAL, "%s: the message does not decode as %s",
	                  pathlen ? path : "request", desc ? desc->name : "protobuf");
}

int fd_wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                  fd_err_t *err)
{
	char path[256] = "";
	return check(desc, buf, buf + len, 0, path, 0, err);
}

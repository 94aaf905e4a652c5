/* test_wire.c - fd_wire_check and fd_utf8_valid, from a table of cases. */
#include <string.h>
#include "fd/wire.h"
#include "grpc/health/v1/health.pb-c.h"
#include "frontdesk/v1/lines.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "test.h"

typedef struct {
	const char *name;
	const ProtobufCMessageDescriptor *desc;
	const char *bytes;
	size_t len;
	int want;            /* 0 or -FD_EINVAL */
	const char *msg;     /* expected start of the message */
} wire_case_t;

#define B(s) s, sizeof(s) - 1
#define HEALTH &grpc__health__v1__health_check_request__descriptor
#define UPDATE_LINE &frontdesk__v1__update_line_request__descriptor
#define CREATE_LINE &frontdesk__v1__create_line_request__descriptor

static const wire_case_t cases[] = {
	{ "empty message", HEALTH, B(""), 0, NULL },
	{ "plain string", HEALTH, B("\x0a\x03" "abc"), 0, NULL },
	{ "multibyte UTF-8", HEALTH, B("\x0a\x04" "\xc3\xa9\xe2\x82"), -FD_EINVAL, "service: not valid UTF-8" },
	{ "valid 3-byte", HEALTH, B("\x0a\x03" "\xe2\x82\xac"), 0, NULL },
	{ "valid 4-byte", HEALTH, B("\x0a\x04" "\xf0\x9f\x98\x80"), 0, NULL },
	{ "embedded NUL", HEALTH, B("\x0a\x05" "ab\x00" "cd"), -FD_EINVAL, "service: contains a NUL byte" },
	{ "overlong slash", HEALTH, B("\x0a\x02" "\xc0\xaf"), -FD_EINVAL, "service: not valid UTF-8" },
	{ "surrogate", HEALTH, B("\x0a\x03" "\xed\xa0\x80"), -FD_EINVAL, "service: not valid UTF-8" },
	{ "past U+10FFFF", HEALTH, B("\x0a\x04" "\xf4\x90\x80\x80"), -FD_EINVAL, "service: not valid UTF-8" },
	{ "truncated sequence", HEALTH, B("\x0a\x02" "a\xe2"), -FD_EINVAL, "service: not valid UTF-8" },
	{ "length past the end", HEALTH, B("\x0a\x40" "abc"), -FD_EINVAL, "request: the message does not decode" },
	{ "group wire type", HEALTH, B("\x0b\x0c"), -FD_EINVAL, "request: the message does not decode" },
	{ "unknown field skipped", HEALTH, B("\x12\x02" "\xff\xff" "\x0a\x01" "a"), 0, NULL },
	{ "field number 0", HEALTH, B("\x02\x01" "a"), -FD_EINVAL, "request: the message does not decode" },
	{ "truncated varint", HEALTH, B("\x10\x80"), -FD_EINVAL, "request: the message does not decode" },
	{ "nested string", UPDATE_LINE, B("\x3a\x04" "\x0a\x02" "\xff\xfe"), -FD_EINVAL, "notes.value: not valid UTF-8" },
	{ "nested fine", UPDATE_LINE, B("\x3a\x04" "\x0a\x02" "ok"), 0, NULL },
	{ "nested truncated", UPDATE_LINE, B("\x3a\x04" "\x0a\x09" "ok"), -FD_EINVAL, "notes: the message does not decode" },
	{ "repeated strings, second bad", UPDATE_LINE,
	  B("\x22\x08" "\x0a\x02" "ok" "\x0a\x02" "\x00x"), -FD_EINVAL, "allowed_ips.values: contains a NUL byte" },
	{ "bytes of an int field skipped", CREATE_LINE, B("\x08\x05"), 0, NULL },
};

static void test_cases(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const wire_case_t *c = &cases[i];
		fd_err_t err = { 0 };
		int rc = fd_wire_check(c->desc, (const uint8_t *)c->bytes, c->len, &err);
		CHECK(rc == c->want, "%s: rc %d, want %d (%s)", c->name, rc, c->want, err.msg);
		if (c->msg)
			CHECK(strncmp(err.msg, c->msg, strlen(c->msg)) == 0, "%s: message \"%s\"", c->name,
			      err.msg);
	}
}

/* DescriptorProto.nested_type (field 3) is a DescriptorProto: nest it n deep. */
static size_t nest(uint8_t *buf, size_t cap, int n)
{
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		if (len + 2 > cap || len > 127)
			break;
		memmove(buf + 2, buf, len);
		buf[0] = 0x1a;
		buf[1] = (uint8_t)len;
		len += 2;
	}
	return len;
}

static void test_depth(void)
{
	uint8_t buf[256];
	fd_err_t err = { 0 };
	size_t len = nest(buf, sizeof(buf), FD_WIRE_MAX_DEPTH);
	CHECK(fd_wire_check(&google__protobuf__descriptor_proto__descriptor, buf, len, &err) == 0,
	      "depth %d: %s", FD_WIRE_MAX_DEPTH, err.msg);
	len = nest(buf, sizeof(buf), FD_WIRE_MAX_DEPTH + 2);
	CHECK(fd_wire_check(&google__protobuf__descriptor_proto__descriptor, buf, len, &err) ==
	              -FD_EINVAL && strstr(err.msg, "nested more than"),
	      "depth %d: %s", FD_WIRE_MAX_DEPTH + 2, err.msg);
}

int main(void)
{
	test_cases();
	test_depth();
	return test_summary();
}

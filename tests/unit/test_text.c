/* test_text.c - fd_check_text and fd_check_name, from a table of cases:
 * each refused class (controls, C1, bidi overrides and isolates, blanks
 * only, leading/trailing blanks in names) and what must still pass. */
#include <string.h>
#include "fd/text.h"
#include "test.h"

typedef struct {
	const char *s;
	int min, max;
	int want_text;           /* 0 or -FD_EINVAL for fd_check_text */
	int want_name;           /* ... for fd_check_name */
	const char *msg;         /* expected message after "f: " when refused (either) */
} text_case_t;

#define BAD (-FD_EINVAL)

static const text_case_t cases[] = {
	{ "", 0, 10, 0, 0, NULL },
	{ "", 1, 10, BAD, BAD, "required" },
	{ "Alice", 1, 10, 0, 0, NULL },
	{ "Zoë Ünal", 1, 10, 0, 0, NULL },                         /* 8 code points */
	{ "日本語のテキスト", 1, 8, 0, 0, NULL },
	{ "日本語のテキストだ", 1, 8, BAD, BAD, "at most 8 characters" },
	{ "a b", 1, 10, 0, 0, NULL },
	{ "emoji \xf0\x9f\x98\x80", 1, 10, 0, 0, NULL },
	{ "tab\there", 0, 20, BAD, BAD, "control characters are not allowed" },
	{ "nl\n", 0, 20, BAD, BAD, "control characters are not allowed" },
	{ "del\x7f", 0, 20, BAD, BAD, "control characters are not allowed" },
	{ "nel\xc2\x85", 0, 20, BAD, BAD, "C1 control characters" },
	{ "csi\xc2\x9b" "31m", 0, 20, BAD, BAD, "C1 control characters" },
	{ "\xc2\x80", 0, 20, BAD, BAD, "C1 control characters" },
	{ "\xc2\x9f", 0, 20, BAD, BAD, "C1 control characters" },
	{ "nbsp\xc2\xa0ok", 0, 20, 0, 0, NULL },                    /* U+00A0 just past C1 */
	{ "admin\xe2\x80\xae" "txt.exe", 0, 20, BAD, BAD, "bidirectional overrides" },   /* U+202E */
	{ "\xe2\x80\xaa" "x", 0, 20, BAD, BAD, "bidirectional overrides" },  /* U+202A */
	{ "\xe2\x80\xac", 0, 20, BAD, BAD, "bidirectional overrides" },      /* U+202C */
	{ "x\xe2\x81\xa6" "y", 0, 20, BAD, BAD, "bidirectional overrides" }, /* U+2066 */
	{ "x\xe2\x81\xa9", 0, 20, BAD, BAD, "bidirectional overrides" },     /* U+2069 */
	{ "x\xe2\x80\xa9" "y", 0, 20, 0, 0, NULL },        /* U+2029 paragraph separator (a blank), inside */
	{ "x\xe2\x80\x8f" "y", 0, 20, 0, 0, NULL },        /* U+200F RLM: a mark, not an override */
	{ " ", 0, 20, BAD, BAD, NULL },
	{ "   ", 0, 20, BAD, BAD, NULL },
	{ "\xe3\x80\x80", 0, 20, BAD, BAD, NULL },                  /* ideographic space */
	{ "\xe2\x80\x8b\xe2\x80\x8b", 0, 20, BAD, BAD, NULL },      /* zero-width spaces */
	{ "\xef\xbb\xbf", 0, 20, BAD, BAD, NULL },                  /* BOM */
	{ " lead", 1, 20, 0, BAD, "must not start with a space" },
	{ "trail ", 1, 20, 0, BAD, "must not end with a space" },
	{ "trail\xc2\xa0", 1, 20, 0, BAD, "must not end with a space" },
	{ "\xe2\x80\x83" "em", 1, 20, 0, BAD, "must not start with a space" },
	{ "in side", 1, 20, 0, 0, NULL },
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const text_case_t *c = &cases[i];
		for (int name = 0; name < 2; name++) {
			fd_err_t err = { 0 };
			int rc = name ? fd_check_name("f", c->s, c->min, c->max, &err)
			              : fd_check_text("f", c->s, c->min, c->max, &err);
			int want = name ? c->want_name : c->want_text;
			CHECK(rc == want, "case %zu (%s) %s: got %d want %d (%s)", i, c->s, name ? "name" : "text", rc,
			      want, err.msg);
			if (rc < 0) {
				CHECK(strncmp(err.msg, "f: ", 3) == 0, "case %zu: message names the field: %s", i, err.msg);
				if (c->msg)
					CHECK(strstr(err.msg, c->msg) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg, c->msg);
			}
		}
	}
	/* Every blank that makes a value "only spaces". */
	static const unsigned blanks[] = { 0x20, 0xa0, 0x1680, 0x180e, 0x2000, 0x2005, 0x200a, 0x200b, 0x200d,
		                               0x2028, 0x2029, 0x202f, 0x205f, 0x2060, 0x3000, 0xfeff };
	for (size_t i = 0; i < sizeof(blanks) / sizeof(blanks[0]); i++)
		CHECK(fd_text_blank(blanks[i]), "U+%04X is a blank", blanks[i]);
	static const unsigned not_blanks[] = { 'a', 0x200e, 0x200f, 0x2030, 0x3001, 0xe9 };
	for (size_t i = 0; i < sizeof(not_blanks) / sizeof(not_blanks[0]); i++)
		CHECK(!fd_text_blank(not_blanks[i]), "U+%04X is not a blank", not_blanks[i]);
	return test_summary();
}

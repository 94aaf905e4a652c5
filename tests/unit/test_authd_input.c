/* test_authd_input.c - authd's pure input rules, from tables: usernames,
 * new and presented passwords, slugs, forwarded client addresses, audit
 * action filters, service names and audiences, scopes, API key expiry,
 * refresh token shapes, reseller permissions (request values, bits, the
 * texts stored), and each enum's table both ways against the contract.
 * Through authd's internal headers (check.h, enums.h), linking authd_core. */
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "enums.h"
#include "fd/arena.h"
#include "test.h"

/* "#<n>:<c>": n times c (long inputs written short); anything else as it is. */
static const char *expand(const char *s, char *buf, size_t size)
{
	if (s[0] != '#')
		return s;
	char *end;
	long n = strtol(s + 1, &end, 10);
	if (n < 0 || (size_t)n >= size || end[0] != ':' || !end[1])
		abort();
	memset(buf, end[1], (size_t)n);
	buf[n] = '\0';
	return buf;
}

/* ---- string rules ---- */

enum rule { USERNAME, PASSWORD, PASSWORD_GIVEN, PASSWORD_REQUIRED, SLUG, LOGIN_SLUG, CLIENT_ADDRESS, ACTION,
	        SERVICE_NAME, AUDIENCE };

typedef struct {
	enum rule rule;
	const char *field, *input;
	const char *msg;           /* NULL: accepted; else the whole message (INVALID_ARGUMENT) */
} rule_case_t;

#define USERNAME_CHARS "username: only letters, digits and . _ @ - are allowed"
#define SLUG_LENGTH "slug: 2 to 63 characters of a-z, 0-9 and -"
#define SLUG_CHARS "slug: only a-z, 0-9 and - (not first or last)"
#define ADDRESS "client_address: an IPv4 or IPv6 address"
#define ACTION_CHARS "action: only a-z, 0-9, _ and . (\"tenant.suspend\", or \"login.\" for every login action)"
#define AUDIENCES "audience: one of authd, billingd, linesd, routerd"

static const rule_case_t rules[] = {
	/* usernames: what a token's JSON needs no escaping for */
	{ USERNAME, "username", "alice", NULL },
	{ USERNAME, "username", "A.b_c@d-e09", NULL },
	{ USERNAME, "username", "#64:a", NULL },
	{ USERNAME, "username", "", "username: 1 to 64 characters" },
	{ USERNAME, "username", "#65:a", "username: 1 to 64 characters" },
	{ USERNAME, "admin_username", "#65:a", "admin_username: 1 to 64 characters" },
	{ USERNAME, "username", "al ice", USERNAME_CHARS },
	{ USERNAME, "username", "al\"ice", USERNAME_CHARS },
	{ USERNAME, "username", "al\\ice", USERNAME_CHARS },
	{ USERNAME, "username", "al'ice", USERNAME_CHARS },
	{ USERNAME, "username", "al%ice", USERNAME_CHARS },
	{ USERNAME, "username", "a\tb", USERNAME_CHARS },
	{ USERNAME, "username", "\xc3\xa5" "lice", USERNAME_CHARS },       /* "ålice" */
	{ USERNAME, "username", "alice\xe2\x80\xae", USERNAME_CHARS },  /* a bidi override */
	/* new passwords: 8 to 1024 bytes, any bytes */
	{ PASSWORD, "password", "#8:x", NULL },
	{ PASSWORD, "password", "#1024:x", NULL },
	{ PASSWORD, "password", "        ", NULL },
	{ PASSWORD, "password", "\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4", NULL },   /* 4 characters, 8 bytes: bytes are counted */
	{ PASSWORD, "password", "", "password: at least 8 characters" },
	{ PASSWORD, "password", "#7:x", "password: at least 8 characters" },
	{ PASSWORD, "new_password", "#1025:x", "new_password: at most 1024 bytes" },
	/* passwords presented: Login's (required), the current one (optional) */
	{ PASSWORD_REQUIRED, "password", "x", NULL },
	{ PASSWORD_REQUIRED, "password", "#1024:x", NULL },
	{ PASSWORD_REQUIRED, "password", "", "password: 1 to 1024 bytes" },
	{ PASSWORD_REQUIRED, "password", "#1025:x", "password: 1 to 1024 bytes" },
	{ PASSWORD_GIVEN, "current_password", "", NULL },
	{ PASSWORD_GIVEN, "current_password", "#1024:x", NULL },
	{ PASSWORD_GIVEN, "current_password", "#1025:x", "current_password: at most 1024 bytes" },
	{ PASSWORD_GIVEN, "secret", "#1025:x", "secret: at most 1024 bytes" },
	/* tenants' slugs */
	{ SLUG, "slug", "ab", NULL },
	{ SLUG, "slug", "acme-tv", NULL },
	{ SLUG, "slug", "a--b", NULL },
	{ SLUG, "slug", "0a", NULL },
	{ SLUG, "slug", "#63:a", NULL },
	{ SLUG, "slug", "platform", NULL },       /* taken: CreateTenant's own rule */
	{ SLUG, "slug", "", SLUG_LENGTH },
	{ SLUG, "slug", "a", SLUG_LENGTH },
	{ SLUG, "slug", "#64:a", SLUG_LENGTH },
	{ SLUG, "slug", "-ab", SLUG_CHARS },
	{ SLUG, "slug", "ab-", SLUG_CHARS },
	{ SLUG, "slug", "Ab", SLUG_CHARS },
	{ SLUG, "slug", "a_b", SLUG_CHARS },
	{ SLUG, "slug", "a b", SLUG_CHARS },
	{ SLUG, "slug", "a.b", SLUG_CHARS },
	{ SLUG, "slug", "\xc3\xa4" "b", SLUG_CHARS },
	/* the slug of a login: a tenant's or the platform's */
	{ LOGIN_SLUG, "tenant_slug", "platform", NULL },
	{ LOGIN_SLUG, "tenant_slug", "acme", NULL },
	{ LOGIN_SLUG, "tenant_slug", "Platform", "tenant_slug: only a-z, 0-9 and - (not first or last)" },
	{ LOGIN_SLUG, "tenant_slug", "p", "tenant_slug: 2 to 63 characters of a-z, 0-9 and -" },
	/* a client address a portal forwards */
	{ CLIENT_ADDRESS, "client_address", "10.0.0.1", NULL },
	{ CLIENT_ADDRESS, "client_address", "::1", NULL },
	{ CLIENT_ADDRESS, "client_address", "[::1]", NULL },
	{ CLIENT_ADDRESS, "client_address", "2001:DB8::ff00:42", NULL },
	{ CLIENT_ADDRESS, "client_address", "#64:1", NULL },
	{ CLIENT_ADDRESS, "client_address", "#65:1", "client_address: at most 64 characters" },
	{ CLIENT_ADDRESS, "client_address", "10.0.0.1 ", ADDRESS },
	{ CLIENT_ADDRESS, "client_address", "localhost", ADDRESS },
	{ CLIENT_ADDRESS, "client_address", "10.0.0.0/8", ADDRESS },
	{ CLIENT_ADDRESS, "client_address", "10.0.0.1,10.0.0.2", ADDRESS },
	{ CLIENT_ADDRESS, "client_address", "fe80::1%eth0", ADDRESS },
	/* audit action filters: no LIKE wildcard */
	{ ACTION, "action", "", NULL },
	{ ACTION, "action", "tenant.suspend", NULL },
	{ ACTION, "action", "login.", NULL },
	{ ACTION, "action", "api_key.create", NULL },
	{ ACTION, "action", "#100:a", NULL },
	{ ACTION, "action", "#101:a", "action: at most 100 characters" },
	{ ACTION, "action", "login%", ACTION_CHARS },
	{ ACTION, "action", "login_%", ACTION_CHARS },
	{ ACTION, "action", "Login.", ACTION_CHARS },
	{ ACTION, "action", "login.*", ACTION_CHARS },
	{ ACTION, "action", "login\\", ACTION_CHARS },
	{ ACTION, "action", "line create", ACTION_CHARS },
	/* service tokens */
	{ SERVICE_NAME, "service_name", "linesd", NULL },
	{ SERVICE_NAME, "service_name", "#31:a", NULL },
	{ SERVICE_NAME, "service_name", "", "service_name: 1 to 31 characters" },
	{ SERVICE_NAME, "service_name", "#32:a", "service_name: 1 to 31 characters" },
	{ AUDIENCE, "audience", "authd", NULL },
	{ AUDIENCE, "audience", "billingd", NULL },
	{ AUDIENCE, "audience", "linesd", NULL },
	{ AUDIENCE, "audience", "routerd", NULL },
	{ AUDIENCE, "audience", "edged", AUDIENCES },
	{ AUDIENCE, "audience", "", AUDIENCES },
	{ AUDIENCE, "audience", "Linesd", AUDIENCES },
	{ AUDIENCE, "audience", "linesd ", AUDIENCES },
	{ AUDIENCE, "audience", "frontdesk", AUDIENCES },
};

static int apply(enum rule r, const char *field, const char *s, fd_err_t *err)
{
	switch (r) {
	case USERNAME: return check_username(field, s, err);
	case PASSWORD: return check_password(field, s, err);
	case PASSWORD_GIVEN: return check_password_given(field, s, false, err);
	case PASSWORD_REQUIRED: return check_password_given(field, s, true, err);
	case SLUG: return check_slug(field, s, err);
	case LOGIN_SLUG: return check_login_slug(field, s, err);
	case CLIENT_ADDRESS: return check_client_address(field, s, err);
	case ACTION: return check_action_filter(field, s, err);
	case SERVICE_NAME: return check_service_name(field, s, err);
	case AUDIENCE: return check_audience(field, s, err);
	}
	return -1;
}

static void test_rules(void)
{
	static char buf[2048];
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		const rule_case_t *k = &rules[i];
		fd_err_t err = { 0 };
		int rc = apply(k->rule, k->field, expand(k->input, buf, sizeof(buf)), &err);
		CHECK(rc == (k->msg ? -FD_EINVAL : 0), "case %zu (%s '%.40s'): rc %d (%s)", i, k->field, k->input, rc,
		      err.msg);
		if (k->msg)
			CHECK(err.code == FD_EINVAL && strcmp(err.msg, k->msg) == 0, "case %zu (%s '%.40s'): '%s'", i, k->field,
			      k->input, err.msg);
	}
}

/* ---- scopes and expiry ---- */

#define S(x) FRONTDESK__V1__SCOPE__SCOPE_##x

static void test_scopes(void)
{
	static const struct {
		Frontdesk__V1__Scope v[3];
		size_t n;
		const char *msg;
	} cases[] = {
		{ { 0 }, 0, NULL },
		{ { S(LINES_READ) }, 1, NULL },
		{ { S(LINES_READ), S(AUDIT_READ), S(LINES_READ) }, 3, NULL },
		{ { S(UNSPECIFIED) }, 1, "scopes[0]: unknown scope 0" },
		{ { S(LINES_READ), (Frontdesk__V1__Scope)999 }, 2, "scopes[1]: unknown scope 999" },
		{ { S(LINES_READ), S(LINES_READ), (Frontdesk__V1__Scope)-1 }, 3, "scopes[2]: unknown scope -1" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fd_err_t err = { 0 };
		fd_scopes_t got = 77, want = 0;
		for (size_t j = 0; j < cases[i].n && !cases[i].msg; j++)
			want |= FD_SCOPE(cases[i].v[j]);
		int rc = check_scopes("scopes", cases[i].v, cases[i].n, &got, &err);
		CHECK(rc == (cases[i].msg ? -FD_EINVAL : 0), "scopes case %zu: rc %d (%s)", i, rc, err.msg);
		if (cases[i].msg)
			CHECK(strcmp(err.msg, cases[i].msg) == 0, "scopes case %zu: '%s'", i, err.msg);
		else
			CHECK(got == want, "scopes case %zu: %" PRIx64 ", want %" PRIx64, i, (uint64_t)got, (uint64_t)want);
	}
	/* Every scope the contract defines is one a request may ask for; 64 of
	 * them are allowed, 65 are not. */
	const ProtobufCEnumDescriptor *d = &frontdesk__v1__scope__descriptor;
	Frontdesk__V1__Scope many[65];
	for (unsigned i = 0; i < d->n_values; i++) {
		fd_err_t err = { 0 };
		fd_scopes_t got;
		Frontdesk__V1__Scope v = (Frontdesk__V1__Scope)d->values[i].value;
		int rc = check_scopes("scopes", &v, 1, &got, &err);
		CHECK(v == 0 ? rc == -FD_EINVAL : rc == 0 && got == FD_SCOPE(v), "scope %s: rc %d", d->values[i].name, rc);
	}
	for (size_t i = 0; i < 65; i++)
		many[i] = S(LINES_READ);
	fd_err_t err = { 0 };
	fd_scopes_t got;
	CHECK(check_scopes("scopes", many, 64, &got, &err) == 0, "64 scopes refused: %s", err.msg);
	CHECK(check_scopes("scopes", many, 65, &got, &err) == -FD_EINVAL && strcmp(err.msg, "scopes: at most 64") == 0,
	      "65 scopes: '%s'", err.msg);
}

static void test_expiry(void)
{
	static const struct {
		int64_t v;
		bool ok;
	} cases[] = { { 0, true }, { 1001, true }, { INT64_MAX, true }, { 1000, false }, { 999, false },
		          { 1, false }, { -1, false }, { INT64_MIN, false } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fd_err_t err = { 0 };
		int rc = check_expires_at("expires_at", cases[i].v, 1000, &err);
		CHECK(rc == (cases[i].ok ? 0 : -FD_EINVAL), "expires_at %" PRId64 ": rc %d", cases[i].v, rc);
		if (!cases[i].ok)
			CHECK(strcmp(err.msg, "expires_at: must be in the future (or 0 for never)") == 0, "'%s'", err.msg);
	}
}

/* ---- refresh tokens' shape ---- */

static void test_refresh_tokens(void)
{
	static const struct {
		const char *head, *tenant, *id;
		size_t secret;             /* characters of secret */
		bool ok;
		int64_t want_tenant, want_id;
	} cases[] = {
		{ "fdr_", "5", "9", 43, true, 5, 9 },
		{ "fdr_", "0", "1", 43, true, 0, 1 },                    /* the platform's admins */
		{ "fdr_", "123456789012345678", "77", 43, true, 123456789012345678, 77 },
		{ "fdr_", "5", "0", 43, false, 0, 0 },                   /* ids start at 1 */
		{ "fdr_", "", "9", 43, false, 0, 0 },
		{ "fdr_", "5", "", 43, false, 0, 0 },
		{ "fdr_", "-5", "9", 43, false, 0, 0 },
		{ "fdr_", "+5", "9", 43, false, 0, 0 },
		{ "fdr_", " 5", "9", 43, false, 0, 0 },
		{ "fdr_", "5", "-9", 43, false, 0, 0 },
		{ "fdr_", "5a", "9", 43, false, 0, 0 },
		{ "fdr_", "5", "9x", 43, false, 0, 0 },
		{ "fdr_", "1234567890123456789", "1", 43, false, 0, 0 },  /* past 18 digits */
		{ "fdr_", "5", "9", 42, false, 0, 0 },
		{ "fdr_", "5", "9", 44, false, 0, 0 },
		{ "fdr_", "5", "9", 0, false, 0, 0 },
		{ "fdk_", "5", "9", 43, false, 0, 0 },                   /* an API key's */
		{ "FDR_", "5", "9", 43, false, 0, 0 },
		{ "fdr", "5", "9", 43, false, 0, 0 },
	};
	char secret[64], tok[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(secret, 's', cases[i].secret);
		secret[cases[i].secret] = '\0';
		snprintf(tok, sizeof(tok), "%s%s_%s_%s", cases[i].head, cases[i].tenant, cases[i].id, secret);
		int64_t tenant = -7, id = -7;
		int rc = parse_refresh_token(tok, &tenant, &id);
		CHECK(rc == (cases[i].ok ? 0 : -1), "'%s': rc %d", tok, rc);
		if (cases[i].ok)
			CHECK(tenant == cases[i].want_tenant && id == cases[i].want_id, "'%s': %" PRId64 ", %" PRId64, tok,
			      tenant, id);
	}
	CHECK(parse_refresh_token("", &(int64_t){ 0 }, &(int64_t){ 0 }) == -1, "empty token");
	/* Over 100 characters in all (an id of 54 digits). */
	char digits[64];
	memset(digits, '1', 54);
	digits[54] = '\0';
	memset(secret, 's', 43);
	secret[43] = '\0';
	snprintf(tok, sizeof(tok), "fdr_5_%s_%s", digits, secret);
	CHECK(strlen(tok) > 100 && parse_refresh_token(tok, &(int64_t){ 0 }, &(int64_t){ 0 }) == -1,
	      "long token accepted");
}

/* ---- reseller permissions ---- */

#define P(x) FRONTDESK__V1__RESELLER_PERMISSION__RESELLER_PERMISSION_##x
#define BOTH (FD_PERM_CREATE_SUBRESELLERS | FD_PERM_CREATE_TRIALS)

static void test_permissions(void)
{
	static const struct {
		Frontdesk__V1__ResellerPermission v[3];
		size_t n;
		unsigned bits;
		const char *msg;
	} requests[] = {
		{ { 0 }, 0, 0, NULL },
		{ { P(CREATE_SUBRESELLERS) }, 1, FD_PERM_CREATE_SUBRESELLERS, NULL },
		{ { P(CREATE_TRIALS) }, 1, FD_PERM_CREATE_TRIALS, NULL },
		{ { P(CREATE_TRIALS), P(CREATE_SUBRESELLERS), P(CREATE_TRIALS) }, 3, BOTH, NULL },
		{ { P(UNSPECIFIED) }, 1, 0, "permissions[0]: unknown permission 0" },
		{ { P(CREATE_TRIALS), (Frontdesk__V1__ResellerPermission)7 }, 2, 0, "permissions[1]: unknown permission 7" },
		{ { (Frontdesk__V1__ResellerPermission)-3 }, 1, 0, "permissions[0]: unknown permission -3" },
	};
	for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
		fd_err_t err = { 0 };
		unsigned got = 99;
		int rc = permissions_of_request("permissions", requests[i].v, requests[i].n, &got, &err);
		CHECK(rc == (requests[i].msg ? -FD_EINVAL : 0), "permissions case %zu: rc %d (%s)", i, rc, err.msg);
		if (requests[i].msg)
			CHECK(strcmp(err.msg, requests[i].msg) == 0, "permissions case %zu: '%s'", i, err.msg);
		else
			CHECK(got == requests[i].bits, "permissions case %zu: %u", i, got);
	}
	fd_err_t err = { 0 };
	unsigned got;
	Frontdesk__V1__ResellerPermission bad = P(UNSPECIFIED);
	CHECK(permissions_of_request("permissions.values", &bad, 1, &got, &err) == -FD_EINVAL &&
	      strcmp(err.msg, "permissions.values[0]: unknown permission 0") == 0, "'%s'", err.msg);

	/* Bits as the texts accounts.permissions stores, as its text[] literal,
	 * read back by the runtime's reader of that column; and as the list a
	 * Reseller message carries. Bits that are no permission are left out. */
	static const struct {
		unsigned bits;
		const char *text, *array;
		size_t n;
	} texts[] = {
		{ 0, "", "{}", 0 },
		{ FD_PERM_CREATE_SUBRESELLERS, "create_subresellers", "{create_subresellers}", 1 },
		{ FD_PERM_CREATE_TRIALS, "create_trials", "{create_trials}", 1 },
		{ BOTH, "create_subresellers,create_trials", "{create_subresellers,create_trials}", 2 },
		{ BOTH | 1u | (1u << 9), "create_subresellers,create_trials", "{create_subresellers,create_trials}", 2 },
	};
	fd_arena_t a;
	fd_arena_init(&a, 0);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		const char *t = permissions_text(&a, texts[i].bits, false);
		const char *arr = permissions_text(&a, texts[i].bits, true);
		CHECK(t && strcmp(t, texts[i].text) == 0, "bits %u: '%s'", texts[i].bits, t ? t : "(null)");
		CHECK(arr && strcmp(arr, texts[i].array) == 0, "bits %u: '%s'", texts[i].bits, arr ? arr : "(null)");
		CHECK(arr && fd_permissions_parse(arr) == (texts[i].bits & BOTH), "bits %u: read back as %u",
		      texts[i].bits, arr ? fd_permissions_parse(arr) : 0);
		size_t n = 9;
		Frontdesk__V1__ResellerPermission *v = permissions_list(&a, texts[i].bits, &n);
		CHECK(v && n == texts[i].n, "bits %u: %zu listed", texts[i].bits, n);
		for (size_t j = 0; v && j < n; j++)
			CHECK(permission_bit((int)v[j]) & texts[i].bits, "bits %u: lists %d", texts[i].bits, v[j]);
		if (v && n == 2)
			CHECK(v[0] == P(CREATE_SUBRESELLERS) && v[1] == P(CREATE_TRIALS), "order %d, %d", v[0], v[1]);
	}
	fd_arena_free(&a);
	CHECK(permission_bit(P(UNSPECIFIED)) == 0 && permission_bit(3) == 0 && permission_bit(-1) == 0,
	      "a value that is no permission has a bit");
}

/* ---- enums both ways ---- */

typedef struct {
	const char *what;
	const enum_name_t *table;
	const ProtobufCEnumDescriptor *desc;
	const char *prefix;        /* of the contract's names: TENANT_STATUS_ACTIVE -> "active" */
} enum_case_t;

static const enum_case_t enums[] = {
	{ "tenant status", TENANT_STATUS_NAMES, &frontdesk__v1__tenant_status__descriptor, "TENANT_STATUS_" },
	{ "account status", ACCOUNT_STATUS_NAMES, &frontdesk__v1__reseller_status__descriptor, "RESELLER_STATUS_" },
	{ "audit outcome", AUDIT_OUTCOME_NAMES, &frontdesk__v1__audit_outcome__descriptor, "AUDIT_OUTCOME_" },
	{ "permission", PERMISSION_NAMES, &frontdesk__v1__reseller_permission__descriptor, "RESELLER_PERMISSION_" },
};

/* Texts no table may match: the stored texts are lower case, exact. */
static const char *const strangers[] = { "", "ACTIVE", "Active", "active ", " active", "activ", "unspecified",
	                                      "OK", "Ok", "create-trials", "create_trials\n", "suspend" };

static void test_enums(void)
{
	for (size_t k = 0; k < sizeof(enums) / sizeof(enums[0]); k++) {
		const enum_case_t *e = &enums[k];
		size_t listed = 0;
		for (const enum_name_t *t = e->table; t->name; t++, listed++) {
			CHECK(enum_value(e->table, t->name, -7) == t->value, "%s '%s' -> %d", e->what, t->name,
			      enum_value(e->table, t->name, -7));
			CHECK(enum_text(e->table, t->value) == t->name, "%s %d -> '%s'", e->what, t->value, t->name);
		}
		/* Every value of the contract but UNSPECIFIED, with the text the
		 * database stores. */
		for (unsigned i = 0; i < e->desc->n_values; i++) {
			const ProtobufCEnumValue *v = &e->desc->values[i];
			const char *text = enum_text(e->table, v->value);
			if (v->value == 0) {
				CHECK(text == NULL, "%s: UNSPECIFIED is not stored, got '%s'", e->what, text);
				continue;
			}
			char want[64];
			size_t j = 0;
			for (const char *p = v->name + strlen(e->prefix); *p && j + 1 < sizeof(want); p++)
				want[j++] = (char)tolower((unsigned char)*p);
			want[j] = '\0';
			CHECK(text && strcmp(text, want) == 0, "%s %s: '%s', want '%s'", e->what, v->name, text ? text : "(none)",
			      want);
		}
		CHECK(listed == e->desc->n_values - 1, "%s: %zu listed, the contract has %u values", e->what, listed,
		      e->desc->n_values);
		const int outside[] = { -1, 0, (int)e->desc->n_values, 1000 };
		for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++)
			CHECK(enum_text(e->table, outside[i]) == NULL, "%s %d: listed", e->what, outside[i]);
		for (size_t i = 0; i < sizeof(strangers) / sizeof(strangers[0]); i++)
			CHECK(enum_value(e->table, strangers[i], -7) == -7, "%s '%s': matched", e->what, strangers[i]);
	}
}

int main(void)
{
	test_rules();
	test_scopes();
	test_expiry();
	test_refresh_tokens();
	test_permissions();
	test_enums();
	return test_summary();
}

/* check.h - authd's input rules, pure (no call, no database): each returns 0
 * or -FD_EINVAL with err naming the field. The runtime has already refused
 * non-UTF-8 strings and NUL bytes; free text and names go through fd/text.h.
 * tests/unit/test_authd_input.c reads these rules from tables. */
#ifndef AUTHD_CHECK_H
#define AUTHD_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "fd/auth.h"
#include "fd/status.h"
#include "frontdesk/v1/auth.pb-c.h"

/* 1 to 64 of [A-Za-z0-9._@-]: usernames need no escaping in a token's JSON. */
int check_username(const char *field, const char *s, fd_err_t *err) FD_MUSTCHECK;
/* A new password: 8 characters to 1024 bytes. */
int check_password(const char *field, const char *s, fd_err_t *err) FD_MUSTCHECK;
/* A password presented (Login's, the current one): at most 1024 bytes, and
 * not empty when required. */
int check_password_given(const char *field, const char *s, bool required, fd_err_t *err) FD_MUSTCHECK;
/* A tenant's slug: 2 to 63 of a-z, 0-9 and '-' (not first or last). */
int check_slug(const char *field, const char *s, fd_err_t *err) FD_MUSTCHECK;
/* The slug a login names: a tenant's, or "platform" (tenant 0). */
int check_login_slug(const char *field, const char *s, fd_err_t *err) FD_MUSTCHECK;
/* A client address a portal forwards: an IPv4 or IPv6 address's characters
 * ([0-9a-fA-F.:] and brackets), at most 64. */
int check_client_address(const char *field, const char *s, fd_err_t *err) FD_MUSTCHECK;
/* An action filter of ListAuditEvents: what action names are made of
 * (a-z, 0-9, '_', '.'), so it holds no LIKE wildcard; at most 100. A
 * trailing '.' makes it a prefix ("login."). */
int check_action_filter(const char *field, const char *s, fd_err_t *err) FD_MUSTCHECK;
/* Scopes a request asks for: at most 64, each one the contract defines;
 * *out their set. */
int check_scopes(const char *field, const Frontdesk__V1__Scope *v, size_t n, fd_scopes_t *out,
                 fd_err_t *err) FD_MUSTCHECK;
/* An API key's expiry: 0 (never) or after now (Unix seconds). */
int check_expires_at(const char *field, int64_t v, int64_t now, fd_err_t *err) FD_MUSTCHECK;
/* A service token's requester and audience. */
int check_service_name(const char *field, const char *s, fd_err_t *err) FD_MUSTCHECK;
int check_audience(const char *field, const char *s, fd_err_t *err) FD_MUSTCHECK;

/* A refresh token's shape, fdr_<tenant>_<id>_<43 characters of secret>:
 * 0 with its tenant (0: the platform's admins) and id, or -1 when it is not
 * that shape (the caller answers "invalid refresh token"). */
int parse_refresh_token(const char *tok, int64_t *tenant, int64_t *id) FD_MUSTCHECK;

#endif

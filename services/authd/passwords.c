/* passwords.c - people's passwords: argon2id (libsodium's crypto_pwhash_str)
 * under a bound on how many hashes run at once, since each takes tens of
 * MiB and a login flood must not exhaust memory. */
#include <string.h>
#include <sodium.h>
#include "authd.h"
#include "fd/clock.h"

#define PW_WAIT_MS 2000      /* a login waits this long for a hashing slot */

static int pw_acquire(authd_t *a, fd_err_t *err)
{
	struct timespec ts = fd_real_after(PW_WAIT_MS);
	pthread_mutex_lock(&a->pw_mu);
	while (a->pw_running >= a->cfg->pwhash_concurrency) {
		if (pthread_cond_timedwait(&a->pw_cv, &a->pw_mu, &ts) != 0 &&
		    a->pw_running >= a->cfg->pwhash_concurrency) {
			pthread_mutex_unlock(&a->pw_mu);
			return fd_err_set(err, FD_EEXHAUSTED, "too many logins in progress; retry in a second");
		}
	}
	a->pw_running++;
	pthread_mutex_unlock(&a->pw_mu);
	return 0;
}

static void pw_release(authd_t *a)
{
	pthread_mutex_lock(&a->pw_mu);
	a->pw_running--;
	pthread_cond_signal(&a->pw_cv);
	pthread_mutex_unlock(&a->pw_mu);
}

int pw_hash(authd_t *a, const char *password, char out[128], fd_err_t *err)
{
	int rc = pw_acquire(a, err);
	if (rc < 0)
		return rc;
	rc = crypto_pwhash_str(out, password, strlen(password), (unsigned long long)a->cfg->pwhash_opslimit,
	                       (size_t)a->cfg->pwhash_memlimit_kib * 1024);
	pw_release(a);
	if (rc != 0)
		return fd_err_set(err, FD_EEXHAUSTED, "password hashing ran out of memory; retry");
	return 0;
}

int pw_verify(authd_t *a, const char *hash, const char *password, fd_err_t *err)
{
	int rc = pw_acquire(a, err);
	if (rc < 0)
		return rc;
	rc = crypto_pwhash_str_verify(hash, password, strlen(password));
	pw_release(a);
	return rc == 0 ? 0 : -FD_EUNAUTH;
}

int pw_wipe_on_free(fd_arena_t *arena, char *const *fields, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!fields[i] || !fields[i][0])
			continue;
		if (fd_arena_wipe_on_free(arena, fields[i], strlen(fields[i])) < 0) {
			for (size_t j = 0; j < n; j++)
				if (fields[j])
					sodium_memzero(fields[j], strlen(fields[j]));
			return -FD_EEXHAUSTED;
		}
	}
	return 0;
}

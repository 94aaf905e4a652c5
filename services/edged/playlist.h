/* playlist.h - the playlist cache's life and what keeps it true (playlist.c
 * serves get.php and xmltv.php, see http.h; the cache is channels.h's).
 *
 * The cache is used only while linesd's event stream (WatchPlaybackEvents)
 * is live: it starts bypassed, state.c calls playlists_events_ready when the
 * stream's first message (ready = true) arrives, playlists_catalog_changed
 * for every CATALOG_CHANGED event, and playlists_forget_all when the stream
 * breaks (until it is ready again, every request reads linesd). */
#ifndef EDGE_PLAYLIST_H
#define EDGE_PLAYLIST_H

#include <stdint.h>
#include "edged.h"

int playlists_init(edged_t *e, fd_err_t *err) FD_MUSTCHECK;
void playlists_fini(edged_t *e);

/* The tenant's catalog is now at version: what was made before it is dropped. */
void playlists_catalog_changed(edged_t *e, int64_t tenant, int64_t version);
/* The event stream is down (or was never up): drop everything, bypass. */
void playlists_forget_all(edged_t *e);
/* The event stream is live (again): cache from now on. */
void playlists_events_ready(edged_t *e);

#endif

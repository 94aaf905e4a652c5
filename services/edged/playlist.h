/* playlist.h - the playlist cache's life (playlist.c serves get.php and
 * xmltv.php, see http.h). */
#ifndef EDGE_PLAYLIST_H
#define EDGE_PLAYLIST_H

#include "edged.h"

int playlists_init(edged_t *e, fd_err_t *err) FD_MUSTCHECK;
void playlists_fini(edged_t *e);

#endif

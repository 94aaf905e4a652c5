/* playlist.c - not built yet: answers 501. */
#include "http.h"
#include "playlist.h"

int playlists_init(edged_t *e, fd_err_t *err)
{
	(void)e; (void)err;
	return 0;
}

void playlists_fini(edged_t *e)
{
	(void)e;
}

int playlist_xmltv(edge_req_t *r)
{
	return edge_reply_text(r, 501, "not built yet");
}

int playlist_get(edge_req_t *r)
{
	return edge_reply_text(r, 501, "not built yet");
}

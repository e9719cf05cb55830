/* admin_events.h - GET /events on the admin listener: the live view as Server-Sent Events. */
#ifndef CTXPROXY_ADMIN_EVENTS_H
#define CTXPROXY_ADMIN_EVENTS_H

struct MHD_Connection;
struct MHD_Response;
struct admin_watch;

/* A stream for connection c: "event: summary" at once and every second
 * (the data of GET /requests), "event: cancellation" for each one the hub
 * learns of from now on, once.  The response's reader blocks (the admin
 * daemon runs a thread per connection) and ends the stream when the hub
 * stops or the client is gone: its socket reports a hang-up (looked at
 * every 250 ms) or a write fails.  NULL with errno: EBUSY (too many
 * streams), ESHUTDOWN (stopping), ENOMEM.  The caller adds the common
 * headers, queues and destroys the response. */
struct MHD_Response *admin_events_response(struct admin_watch *hub,
					   struct MHD_Connection *c);

#endif

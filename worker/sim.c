/* The sim connector (see sim.h): for benchmarks and tests only. */
#include <stdio.h>
#include <string.h>

#include "om/base.h"
#include "om/err.h"
#include "sim.h"

int
om_sim_parse(const char *spec, struct om_sim *out)
{
	char lat[16];
	const char *colon;
	uint32_t ms;
	uint64_t bytes = 0;
	size_t n;

	if (spec == NULL)
		return OM_EINVAL;
	colon = strchr(spec, ':');
	n = colon ? (size_t)(colon - spec) : strlen(spec);
	if (n == 0 || n >= sizeof lat)
		return OM_EINVAL;
	memcpy(lat, spec, n);
	lat[n] = '\0';
	if (om_parse_u32(lat, 0, OM_SIM_MAX_LATENCY_MS, &ms) != 0)
		return OM_EINVAL;
	if (colon != NULL && om_parse_size(colon + 1, 0, OM_SIM_MAX_OUTPUT, &bytes) != 0)
		return OM_EINVAL;
	out->on = true;
	out->latency_ms = ms;
	out->output_bytes = (size_t)bytes;
	return 0;
}

void
om_sim_fill(const char *host, size_t off, uint8_t *buf, size_t n)
{
	char line[300];
	int len = snprintf(line, sizeof line, "%.255s sim output\n", host ? host : "?");
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = (uint8_t)line[(off + i) % (size_t)len];
}

void
om_sim_queue_add(struct om_sim_queue *q, struct om_sim_timer *t, int64_t due)
{
	struct om_sim_timer *p = q->tail;

	om_sim_queue_del(q, t);
	t->due = due;
	while (p != NULL && p->due > due)
		p = p->prev;
	/* after p (NULL: at the head) */
	t->prev = p;
	t->next = p ? p->next : q->head;
	if (t->next)
		t->next->prev = t;
	else
		q->tail = t;
	if (p)
		p->next = t;
	else
		q->head = t;
	t->queued = true;
}

void
om_sim_queue_del(struct om_sim_queue *q, struct om_sim_timer *t)
{
	if (!t->queued)
		return;
	if (t->prev)
		t->prev->next = t->next;
	else
		q->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		q->tail = t->prev;
	t->next = t->prev = NULL;
	t->queued = false;
}

struct om_sim_timer *
om_sim_queue_pop(struct om_sim_queue *q, int64_t now)
{
	struct om_sim_timer *t = q->head;

	if (t == NULL || t->due > now)
		return NULL;
	om_sim_queue_del(q, t);
	return t;
}

int64_t
om_sim_queue_wait(const struct om_sim_queue *q, int64_t now)
{
	if (q->head == NULL)
		return -1;
	return q->head->due > now ? q->head->due - now : 0;
}

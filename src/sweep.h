/*
 * sweep.h
 *		The sweep of recover(): list each routed container's documents and
 *		delete, through the stream, those whose rows are gone.
 */
#ifndef COSMOS_SINK_SWEEP_H
#define COSMOS_SINK_SWEEP_H

#include "postgres.h"

#include "http.h"

extern void SweepStep(bool room);
extern bool SweepOwns(const HttpRequest *http);
extern void SweepComplete(HttpRequest *http);

#endif							/* COSMOS_SINK_SWEEP_H */

/*
 * cosmos_sink.h
 *		Settings and module entry points shared by every part of cosmos_sink:
 *		the output plugin, the route registry, the Cosmos client and the worker.
 */
#ifndef COSMOS_SINK_H
#define COSMOS_SINK_H

#include "postgres.h"

#define COSMOS_SINK_VERSION "0.1.0"
#define COSMOS_SINK_SCHEMA "cosmos_sink"
#define COSMOS_SINK_PLUGIN "cosmos_sink"

/* Settings (guc.c); see README for meaning and units */
extern char *CosmosSinkDatabase;
extern char *CosmosSinkSlotName;
extern bool CosmosSinkEnabled;
extern bool CosmosSinkFailoverSlot;
extern int	CosmosSinkUnknownOutcomeDelayMs;
extern char *CosmosSinkEndpoint;
extern char *CosmosSinkKeyFile;
extern char *CosmosSinkAadTokenFile;
extern char *CosmosSinkCaFile;
extern bool CosmosSinkTlsVerify;
extern bool CosmosSinkHttp2;
extern int	CosmosSinkMaxInFlight;
extern int	CosmosSinkBatchMaxOps;
extern int	CosmosSinkBatchMaxBytes;
extern int	CosmosSinkMaxRuPerSecond;
extern bool CosmosSinkRuBudgetAuto;
extern double CosmosSinkRuShare;
extern int	CosmosSinkRequestTimeoutMs;
extern int	CosmosSinkConnectTimeoutMs;
extern int	CosmosSinkBufferSizeKb;
extern int	CosmosSinkPollIntervalMs;
extern int	CosmosSinkLogMinDurationMs;
extern int	CosmosSinkDeadLettersMax;
extern bool CosmosSinkSkipUnchanged;

/* Module initialisers called from _PG_init */
extern void GucInit(void);
extern void WorkerRegister(void);
extern void StatusShmemInit(void);

/* Checks shared by add_route() and the worker: wal_level and plugin allow-list */
extern void CheckDecodingPrerequisites(int elevel);
extern bool DecodingPrerequisitesMet(char **problem);

#endif							/* COSMOS_SINK_H */

EXTENSION = cosmos_sink
EXTVERSION = 0.1.0

MODULE_big = cosmos_sink
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = sql/cosmos_sink--$(EXTVERSION).sql

# pg_regress suites: every sql/NAME.sql (but the install script) against
# expected/NAME.out, in name order; each suite sets up what it needs
REGRESS = $(sort $(patsubst sql/%.sql,%,$(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-config=test/regress.conf --temp-instance=./tmp_check

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-sign-compare -Wno-cast-function-type
SHLIB_LINK = -lcurl -lssl -lcrypto

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every test: build, install, pg_regress, integration suites (needs root for install)
.PHONY: test
test:
	bash test/run

# Rebuild every object when a header changes (PGXS tracks no header dependencies)
$(OBJS): $(wildcard src/*.h)

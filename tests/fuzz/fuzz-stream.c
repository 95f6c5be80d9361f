/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the migration stream's loader: arbitrary bytes, in
 * arbitrary pieces, into mig_loader_write and mig_loader_end on in-process
 * timer and ram devices made from the real plugins (MUSERD_PLUGIN_DIR, else
 * build/plugins). Nothing may crash or leak.
 *
 * The input: a flags byte, a byte that seeds the piece sizes, then the
 * stream. Flags: bit 0 picks the ram device; bit 1 and bit 2 recompute the
 * header's and the trailer's checksums before the load, so that mutations
 * behind them reach the checks and the plugins instead of stopping at a
 * checksum that no longer matches.
 *
 * With MUSERD_FUZZ_SEED_DIR set, a valid stream of each device (with the
 * flags and seed bytes) is written there at start: the seed corpus.
 * `make fuzz` builds and runs it.
 */
#include <endian.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device-reset.h"
#include "device.h"
#include "migration-stream.h"
#include "plugins.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/mailbox.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    FLAG_RAM = 1,
    FLAG_SEAL_HEADER = 2,
    FLAG_SEAL_TRAILER = 4,
};

/* Made once; they live as long as the process, and take every input. */
static struct plugins *plugins;
static sd_event *event;
static struct mailbox *mailbox;
static struct device *timer, *ram;

static struct device *make(struct plugins *p, sd_event *e, struct mailbox *m, const char *dir,
                           const char *type, const char *config)
{
    const struct plugin_type *t = plugins_find(p, type);
    char path[256];
    struct device *d = NULL;
    char *error = NULL;

    snprintf(path, sizeof(path), "%s/%s.sock", dir, type);
    if (!t || device_new(e, m, t, type, config, path, -1, &d, &error) < 0) {
        fprintf(stderr, "fuzz-stream: no %s device: %s\n", type, error ? error : "no plugin");
        abort();
    }
    return d;
}

/* A valid stream of d, after the flags and seed bytes. */
static void write_seed(struct device *d, const char *dir, const char *name)
{
    static uint8_t buf[1 << 20];
    struct mig_saver *s;
    size_t len = 2, n;

    if (mig_saver_new(d, &s) < 0 || device_quiesce(d, true) < 0)
        abort();
    buf[0] = d == ram ? FLAG_RAM : 0;
    buf[1] = 0;
    do {
        if (mig_saver_read(s, true, buf + len, sizeof(buf) - len, &n) < 0)
            abort();
        len += n;
    } while (n > 0);
    mig_saver_free(s);
    (void)device_quiesce(d, false);

    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "we");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char dir[] = "/tmp/muserd-fuzz-XXXXXX";
    const char *plugin_dir = getenv("MUSERD_PLUGIN_DIR");

    log_set_max_level(LOG_WARNING);
    if (plugins_load_dir(plugin_dir ? plugin_dir : "build/plugins", &plugins) < 0 ||
        sd_event_new(&event) < 0 || mailbox_new(event, &mailbox) < 0 || !mkdtemp(dir))
        abort();
    timer = make(plugins, event, mailbox, dir, "timer", NULL);
    ram = make(plugins, event, mailbox, dir, "ram", "{\"size\": 4096}");
    /* Nobody connects: the sockets' names can go now, and leave no trace. */
    char path[64];
    snprintf(path, sizeof(path), "%s/timer.sock", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/ram.sock", dir);
    unlink(path);
    rmdir(dir);
    const char *seeds = getenv("MUSERD_FUZZ_SEED_DIR");
    if (seeds) {
        write_seed(timer, seeds, "seed-timer");
        write_seed(ram, seeds, "seed-ram");
    }
    return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static void seal(uint8_t *s, size_t len, uint8_t flags)
{
    if ((flags & FLAG_SEAL_HEADER) && len >= 16) {
        uint32_t h;
        memcpy(&h, s + 12, 4);
        h = le32toh(h);
        if (h >= 20 && h <= len)
            put32(s + h - 4, crc32c(0, s, h - 4));
    }
    if ((flags & FLAG_SEAL_TRAILER) && len >= 8)
        put32(s + len - 8, crc32c(0, s, len - 8));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    uint32_t rng = data[1] * 2654435761u | 1;
    size_t len = size - 2;
    /* Exactly the stream's size, so ASan sees any read past it. */
    uint8_t *s = malloc(len ? len : 1);
    if (!s)
        return 0;
    memcpy(s, data + 2, len);
    seal(s, len, flags);

    struct mig_loader *l;
    if (mig_loader_new(flags & FLAG_RAM ? ram : timer, &l) < 0) {
        free(s);
        return 0;
    }
    const char *why = NULL;
    int r = 0;
    for (size_t off = 0, n; off < len && r == 0; off += n) {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        n = rng % 4 == 0 ? len - off : 1 + rng % 97;
        n = n < len - off ? n : len - off;
        r = mig_loader_write(l, s + off, n, &why);
    }
    if (r == 0)
        r = mig_loader_end(l, &why);
    /* Every refusal says why. */
    if (r < 0 && (!why || !*why))
        abort();
    mig_loader_free(l);
    free(s);
    return 0;
}

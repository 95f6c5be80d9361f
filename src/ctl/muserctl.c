/* SPDX-License-Identifier: MIT */
/*
 * muserctl: the command-line face of muserd. Today it probes a device
 * socket directly over vfio-user; the D-Bus commands (list, create, destroy,
 * migrate) come with the daemon's bus interface.
 *
 * Exit status: 0 success, 1 the operation failed, 2 usage error.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/probe.h"
#include "util/macro.h"

#define EXIT_USAGE         2
#define DEFAULT_TIMEOUT_MS 5000

static void help(void)
{
    printf("Usage: muserctl [OPTIONS] COMMAND ...\n"
           "\n"
           "Inspect and manage muserd vfio-user devices.\n"
           "\n"
           "Commands:\n"
           "  probe SOCKET     Connect to a device socket as a VMM would and show what\n"
           "                   a guest sees: PCI IDs, BARs, capabilities, regions, IRQs\n"
           "\n"
           "Options:\n"
           "  -h --help        Show this help\n"
           "     --version     Show the version\n"
           "     --json        Print JSON instead of text\n"
           "     --timeout=SEC Give up waiting for the device after SEC seconds (default %d)\n",
           DEFAULT_TIMEOUT_MS / 1000);
}

struct options {
    bool json;
    int timeout_ms;
};

enum { ARG_VERSION = 0x100, ARG_JSON, ARG_TIMEOUT };

/* Options may come before or after the command: `muserctl --json probe S`
 * and `muserctl probe S --json` both work. Returns 0, 1 (done: help or
 * version printed) or -EINVAL. */
static int parse_argv(int argc, char **argv, struct options *o)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, ARG_VERSION},
        {"json", no_argument, NULL, ARG_JSON},
        {"timeout", required_argument, NULL, ARG_TIMEOUT},
        {},
    };
    int c;

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
        switch (c) {
        case 'h':
            help();
            return 1;
        case ARG_VERSION:
            printf("muserctl %s\n", MUSERD_VERSION);
            return 1;
        case ARG_JSON:
            o->json = true;
            break;
        case ARG_TIMEOUT: {
            char *end;
            double sec = strtod(optarg, &end);
            if (*end || end == optarg || sec < 0 || sec > 86400) {
                fprintf(stderr, "muserctl: invalid timeout '%s'\n", optarg);
                return -EINVAL;
            }
            o->timeout_ms = (int)(sec * 1000);
            break;
        }
        default:
            return -EINVAL;
        }
    }
    return 0;
}

static int cmd_probe(int argc, char **argv, const struct options *o)
{
    struct probe p;

    if (argc != 2) {
        fprintf(stderr, "muserctl: probe takes exactly one SOCKET argument\n");
        return EXIT_USAGE;
    }
    int r = probe_run(argv[1], o->timeout_ms, &p);
    if (r >= 0)
        r = o->json ? probe_print_json(&p) : probe_print_text(&p);
    probe_done(&p);
    return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
    struct options o = {.timeout_ms = DEFAULT_TIMEOUT_MS};

    int r = parse_argv(argc, argv, &o);
    if (r != 0)
        return r > 0 ? EXIT_SUCCESS : EXIT_USAGE;
    if (optind >= argc) {
        fprintf(stderr, "muserctl: missing command (see muserctl --help)\n");
        return EXIT_USAGE;
    }

    const char *cmd = argv[optind];
    if (strcmp(cmd, "probe") == 0)
        return cmd_probe(argc - optind, argv + optind, &o);

    fprintf(stderr, "muserctl: unknown command '%s'\n", cmd);
    return EXIT_USAGE;
}

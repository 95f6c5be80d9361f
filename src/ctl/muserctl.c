/* SPDX-License-Identifier: MIT */
/*
 * muserctl: the command-line face of muserd. Most commands talk to muserd
 * over D-Bus (org.muserd1, see org.muserd1(5)); probe talks vfio-user to a
 * device socket directly, as a VMM would.
 *
 * Exit status: 0 success, 1 the operation failed, 2 usage error.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "ctl/probe.h"

#define DEFAULT_TIMEOUT_MS 5000

static void help(void)
{
    printf("Usage: muserctl [--system | --user | --address ADDRESS] [--json] COMMAND ...\n"
           "\n"
           "Manage the vfio-user devices of muserd.\n"
           "\n"
           "Commands:\n"
           "  list                          List the devices: id, type, state, socket, client\n"
           "  types                         List the device types the plugins provide\n"
           "  create TYPE ID [KEY=VALUE...] Create a device and print its socket path;\n"
           "  create TYPE ID --json JSON    KEY=VALUE: digits make a number, true/false a\n"
           "                                boolean, anything else a string\n"
           "  destroy ID...                 Destroy devices (a connected VMM is cut off)\n"
           "  show [ID]                     Show every property of a device (or of muserd)\n"
           "  reset ID                      Reset a device to its power-on state\n"
           "  migrate ID > FILE             Stop a device and write its state to stdout\n"
           "  incoming ID < FILE            Load a device created with incoming=true from\n"
           "                                stdin and start it\n"
           "  resume ID                     Run a device stopped by migrate again\n"
           "  monitor                       Print device events as they happen, until Ctrl-C\n"
           "  probe SOCKET                  Connect to a device socket as a VMM would and\n"
           "                                show what a guest sees: PCI IDs, BARs, capabilities\n"
           "\n"
           "Options:\n"
           "  -h --help             Show this help\n"
           "     --version          Show the version\n"
           "     --system           Talk to muserd on the system bus (the default)\n"
           "     --user             Talk to muserd on the user's session bus\n"
           "     --address=ADDRESS  Talk to muserd on the bus at ADDRESS (unix:path=...)\n"
           "     --json             Print JSON instead of text\n"
           "     --timeout=SEC      probe: give up after SEC seconds (default %d)\n"
           "\n"
           "See muserctl(1) for more.\n",
           DEFAULT_TIMEOUT_MS / 1000);
}

enum { ARG_VERSION = 0x100, ARG_JSON, ARG_TIMEOUT, ARG_SYSTEM, ARG_USER, ARG_ADDRESS };

/* Options may come before or after the command: `muserctl --json list` and
 * `muserctl list --json` both work. Returns 0, 1 (done: help or version
 * printed) or -EINVAL. */
static int parse_argv(int argc, char **argv, struct ctl_options *o)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, ARG_VERSION},
        {"json", no_argument, NULL, ARG_JSON},
        {"timeout", required_argument, NULL, ARG_TIMEOUT},
        {"system", no_argument, NULL, ARG_SYSTEM},
        {"user", no_argument, NULL, ARG_USER},
        {"address", required_argument, NULL, ARG_ADDRESS},
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
            /* `create TYPE ID --json '{...}'`: an object right after --json
             * is the device's config, taken here so getopt does not see it. */
            if (optind < argc && argv[optind][0] == '{') {
                if (o->config) {
                    fprintf(stderr, "muserctl: more than one --json config given\n");
                    return -EINVAL;
                }
                o->config = argv[optind++];
            } else {
                o->json = true;
            }
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
        case ARG_SYSTEM:
            o->bus_kind = CTL_BUS_SYSTEM;
            break;
        case ARG_USER:
            o->bus_kind = CTL_BUS_USER;
            break;
        case ARG_ADDRESS:
            if (!*optarg) {
                fprintf(stderr, "muserctl: --address needs a D-Bus address\n");
                return -EINVAL;
            }
            o->bus_kind = CTL_BUS_ADDRESS;
            o->address = optarg;
            break;
        default:
            return -EINVAL;
        }
    }
    return 0;
}

static int cmd_probe(int argc, char **argv, const struct ctl_options *o)
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

static const struct {
    const char *name;
    int (*run)(int argc, char **argv, const struct ctl_options *o);
} commands[] = {
    {"list", ctl_list},         {"types", ctl_types},   {"create", ctl_create},
    {"destroy", ctl_destroy},   {"show", ctl_show},     {"reset", ctl_reset},
    {"monitor", ctl_monitor},   {"probe", cmd_probe},   {"migrate", ctl_migrate},
    {"incoming", ctl_incoming}, {"resume", ctl_resume},
};

int main(int argc, char **argv)
{
    struct ctl_options o = {.bus_kind = CTL_BUS_SYSTEM, .timeout_ms = DEFAULT_TIMEOUT_MS};

    int r = parse_argv(argc, argv, &o);
    if (r != 0)
        return r > 0 ? EXIT_SUCCESS : EXIT_USAGE;
    if (optind >= argc) {
        fprintf(stderr, "muserctl: missing command (see muserctl --help)\n");
        return EXIT_USAGE;
    }

    const char *cmd = argv[optind];
    if (o.config && strcmp(cmd, "create") != 0) {
        fprintf(stderr, "muserctl: a JSON config after --json is for create only\n");
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < ELEMENTSOF(commands); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - optind, argv + optind, &o);

    fprintf(stderr, "muserctl: unknown command '%s' (see muserctl --help)\n", cmd);
    return EXIT_USAGE;
}

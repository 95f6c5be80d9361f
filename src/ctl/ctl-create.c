/* SPDX-License-Identifier: MIT */
/*
 * `muserctl create`, `destroy` and `reset`: the commands that change a
 * device. create accepts the config as KEY=VALUE words, which is what people
 * type, or as a JSON object, which is what scripts have; either way muserd
 * receives JSON and alone judges it (its error names the accepted keys).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"

/*
 * A number as JSON writes one: decimal digits, no leading zero, within 64
 * bits. "0660" is therefore a string, which is what socket_mode wants, and
 * "+1", "-1" or " 1", which strtoull() would take, are strings too.
 */
static bool parse_uint(const char *s, uint64_t *ret)
{
    if (!*s || strspn(s, "0123456789") != strlen(s) || (s[0] == '0' && s[1]))
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE)
        return false;
    *ret = v;
    return true;
}

static json_object *config_value(const char *s)
{
    size_t len = strlen(s);
    uint64_t n;

    /* "..." forces a string: socket_group='"1000"' names group id 1000. */
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"')
        return json_object_new_string_len(s + 1, (int)(len - 2));
    if (parse_uint(s, &n))
        return json_object_new_uint64(n);
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)
        return json_object_new_boolean(s[0] == 't');
    return json_object_new_string(s);
}

int ctl_config_from_args(int argc, char **argv, json_object **ret)
{
    _cleanup_(json_object_putp) json_object *config = json_object_new_object();

    if (!config)
        return -ENOMEM;
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) {
            fprintf(stderr,
                    "muserctl: '%s' is not KEY=VALUE; give the config as KEY=VALUE words or as "
                    "--json '{...}'\n",
                    argv[i]);
            return -EINVAL;
        }
        _cleanup_free_ char *key = strndup(argv[i], eq - argv[i]);
        if (!key)
            return -ENOMEM;
        if (json_object_object_get_ex(config, key, NULL)) {
            fprintf(stderr, "muserctl: config key '%s' is given twice\n", key);
            return -EINVAL;
        }
        json_object *v = config_value(eq + 1);
        if (!v)
            return -ENOMEM;
        json_object_object_add(config, key, v);
    }
    *ret = TAKE_PTR(config);
    return 0;
}

static int print_created(sd_bus *bus, const struct ctl_options *o, const char *type, const char *id,
                         const char *path)
{
    _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
    _cleanup_free_ char *socket = NULL;

    int r = sd_bus_get_property_string(bus, MUSERD_BUS_NAME, path, MUSERD_DEVICE, "SocketPath",
                                       &error, &socket);
    if (r < 0) {
        ctl_print_error(o, &error, r);
        return r;
    }
    if (!o->json) {
        /* Only the socket, so that `sock=$(muserctl create ...)` works. */
        printf("%s\n", socket);
        return 0;
    }
    _cleanup_(json_object_putp) json_object *j = json_object_new_object();
    if (!j)
        return -ENOMEM;
    json_object_object_add(j, "Id", json_object_new_string(id));
    json_object_object_add(j, "Type", json_object_new_string(type));
    json_object_object_add(j, "SocketPath", json_object_new_string(socket));
    json_object_object_add(j, "Path", json_object_new_string(path));
    ctl_print_json(j);
    return 0;
}

int ctl_create(int argc, char **argv, const struct ctl_options *o)
{
    _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    _cleanup_(json_object_putp) json_object *config = NULL;
    const char *config_json = o->config, *path;

    if (argc < 3) {
        fprintf(stderr, "muserctl: create needs a TYPE and an ID (see muserctl types)\n");
        return EXIT_USAGE;
    }
    if (o->config && argc > 3) {
        fprintf(stderr, "muserctl: give the config either as KEY=VALUE words or as --json "
                        "'{...}', not both\n");
        return EXIT_USAGE;
    }
    if (!o->config && argc == 4 && argv[3][0] == '{') {
        config_json = argv[3]; /* a JSON object without its --json */
    } else if (!o->config) {
        int r = ctl_config_from_args(argc - 3, argv + 3, &config);
        if (r < 0)
            return r == -EINVAL ? EXIT_USAGE : EXIT_FAILURE;
        /* No config at all is "", which muserd reads as "defaults". */
        config_json = argc == 3
                          ? ""
                          : json_object_to_json_string_ext(
                                config, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    }

    if (ctl_bus_open(o, &bus) < 0 ||
        ctl_call(bus, o, MUSERD_MANAGER_PATH, MUSERD_MANAGER, "CreateDevice", &reply, "sss",
                 argv[1], argv[2], config_json) < 0)
        return EXIT_FAILURE;
    int r = sd_bus_message_read(reply, "o", &path);
    if (r < 0) {
        fprintf(stderr, "muserctl: Cannot read muserd's answer: %s\n", strerror(-r));
        return EXIT_FAILURE;
    }
    return print_created(bus, o, argv[1], argv[2], path) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

int ctl_destroy(int argc, char **argv, const struct ctl_options *o)
{
    _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
    int ret = EXIT_SUCCESS;

    if (argc < 2) {
        fprintf(stderr, "muserctl: destroy needs the ID of a device (see muserctl list)\n");
        return EXIT_USAGE;
    }
    if (ctl_bus_open(o, &bus) < 0)
        return EXIT_FAILURE;
    /* Each id on its own: one that is gone does not keep the others alive. */
    for (int i = 1; i < argc; i++)
        if (ctl_call(bus, o, MUSERD_MANAGER_PATH, MUSERD_MANAGER, "DestroyDevice", NULL, "s",
                     argv[i]) < 0)
            ret = EXIT_FAILURE;
    return ret;
}

int ctl_reset(int argc, char **argv, const struct ctl_options *o)
{
    _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
    _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
    const char *path;

    if (argc != 2) {
        fprintf(stderr, "muserctl: reset takes exactly one device ID\n");
        return EXIT_USAGE;
    }
    if (ctl_bus_open(o, &bus) < 0 || ctl_call(bus, o, MUSERD_MANAGER_PATH, MUSERD_MANAGER,
                                              "GetDevice", &reply, "s", argv[1]) < 0)
        return EXIT_FAILURE;
    int r = sd_bus_message_read(reply, "o", &path);
    if (r < 0) {
        fprintf(stderr, "muserctl: Cannot read muserd's answer: %s\n", strerror(-r));
        return EXIT_FAILURE;
    }
    return ctl_call(bus, o, path, MUSERD_DEVICE, "Reset", NULL, "") < 0 ? EXIT_FAILURE
                                                                        : EXIT_SUCCESS;
}

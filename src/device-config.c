/* SPDX-License-Identifier: MIT */
#include "device-config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/macro.h"

/* Keys muserd reads for every device, whatever its type. */
static const struct muserd_config_key host_keys[] = {
    {"socket_owner", MUSERD_CONFIG_STRING, "user (name or uid) that owns the device socket"},
    {"socket_group", MUSERD_CONFIG_STRING, "group (name or gid) that owns the device socket"},
    {"socket_mode", MUSERD_CONFIG_STRING, "octal mode of the device socket, e.g. \"0660\""},
    {"io_thread", MUSERD_CONFIG_UINT, "I/O thread to serve the device on (default: least loaded)"},
    {"incoming", MUSERD_CONFIG_BOOL,
     "true: wait for a migration stream (Incoming) before serving a client"},
    {NULL, 0, NULL},
};

static const struct muserd_config_key *find_key(const struct muserd_config_key *keys,
                                                const char *name)
{
    for (const struct muserd_config_key *k = keys; k && k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

static const char *type_phrase(enum muserd_config_type type)
{
    switch (type) {
    case MUSERD_CONFIG_STRING:
        return "a string";
    case MUSERD_CONFIG_UINT:
        return "a non-negative integer";
    case MUSERD_CONFIG_BOOL:
        return "true or false";
    }
    return "?";
}

static bool value_has_type(struct json_object *v, enum muserd_config_type type)
{
    switch (type) {
    case MUSERD_CONFIG_STRING:
        return json_object_is_type(v, json_type_string);
    case MUSERD_CONFIG_UINT:
        /* json-c parses integers up to UINT64_MAX; reject negatives and floats. */
        if (!json_object_is_type(v, json_type_int))
            return false;
        errno = 0;
        return json_object_get_int64(v) >= 0 || json_object_get_uint64(v) > INT64_MAX;
    case MUSERD_CONFIG_BOOL:
        return json_object_is_type(v, json_type_boolean);
    }
    return false;
}

/* "size, backing" for the error message. */
static char *key_list(const struct muserd_config_key *keys)
{
    char *list = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&list, &len);
    if (!f)
        return NULL;
    bool first = true;
    for (const struct muserd_config_key *k = keys; k && k->name; k++, first = false)
        fprintf(f, "%s%s", first ? "" : ", ", k->name);
    for (const struct muserd_config_key *k = host_keys; k->name; k++, first = false)
        fprintf(f, "%s%s", first ? "" : ", ", k->name);
    fclose(f);
    return list;
}

/* socket_owner and socket_group name a user and a group; a JSON number is a
 * numeric id, stored as its digits so that one string form reaches the
 * socket code. This is what `muserctl create ... socket_owner=107` sends.
 * Numbers beyond an id ((uid_t)-1 means "unchanged" to chown) are left for
 * the type check to refuse. */
static int ids_as_strings(struct json_object *obj)
{
    static const char *const id_keys[] = {"socket_owner", "socket_group"};

    for (size_t i = 0; i < ELEMENTSOF(id_keys); i++) {
        struct json_object *v;
        if (!json_object_object_get_ex(obj, id_keys[i], &v) ||
            !json_object_is_type(v, json_type_int))
            continue;
        int64_t id = json_object_get_int64(v);
        if (id < 0 || id >= UINT32_MAX)
            continue;
        char digits[16];
        snprintf(digits, sizeof(digits), "%" PRId64, id);
        struct json_object *s = json_object_new_string(digits);
        if (!s)
            return -ENOMEM;
        if (json_object_object_add(obj, id_keys[i], s) < 0) {
            json_object_put(s);
            return -ENOMEM;
        }
    }
    return 0;
}

int device_config_parse(const char *json, const struct muserd_config_key *keys,
                        struct json_object **ret, char **error)
{
    struct json_object *obj;

    *error = NULL;
    if (!json || !*json)
        json = "{}";
    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        return -ENOMEM;
    obj = json_tokener_parse_ex(tok, json, (int)strlen(json));
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t consumed = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!obj || jerr != json_tokener_success || consumed != strlen(json)) {
        json_object_put(obj);
        if (asprintf(error, "The device config is not valid JSON (%s at offset %zu).",
                     jerr == json_tokener_success ? "trailing text" : json_tokener_error_desc(jerr),
                     consumed) < 0)
            *error = NULL;
        return -EINVAL;
    }
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        *error = strdup("The device config must be a JSON object, like {\"size\": 1048576}.");
        return -EINVAL;
    }
    if (ids_as_strings(obj) < 0) {
        json_object_put(obj);
        return -ENOMEM;
    }

    json_object_object_foreach(obj, name, value)
    {
        const struct muserd_config_key *k = find_key(keys, name);
        if (!k)
            k = find_key(host_keys, name);
        if (!k) {
            _cleanup_free_ char *list = key_list(keys);
            if (asprintf(error, "Unknown config key '%s'; this device type accepts: %s.", name,
                         list ? list : "?") < 0)
                *error = NULL;
            json_object_put(obj);
            return -EINVAL;
        }
        if (!value_has_type(value, k->type)) {
            bool id_key = k == &host_keys[0] || k == &host_keys[1];
            if (asprintf(error, "Config key '%s' must be %s, not %s.", name,
                         id_key ? "a name or a numeric id below 4294967295" : type_phrase(k->type),
                         json_type_to_name(json_object_get_type(value))) < 0)
                *error = NULL;
            json_object_put(obj);
            return -EINVAL;
        }
    }
    *ret = obj;
    return 0;
}

int device_config_string(struct json_object *config, const char *key, const char **value)
{
    struct json_object *v;
    if (!json_object_object_get_ex(config, key, &v) || !json_object_is_type(v, json_type_string))
        return -ENOENT;
    *value = json_object_get_string(v);
    return 0;
}

int device_config_uint(struct json_object *config, const char *key, uint64_t *value)
{
    struct json_object *v;
    if (!json_object_object_get_ex(config, key, &v) || !json_object_is_type(v, json_type_int))
        return -ENOENT;
    *value = json_object_get_uint64(v);
    return 0;
}

int device_config_bool(struct json_object *config, const char *key, bool *value)
{
    struct json_object *v;
    if (!json_object_object_get_ex(config, key, &v) || !json_object_is_type(v, json_type_boolean))
        return -ENOENT;
    *value = json_object_get_boolean(v);
    return 0;
}

int device_config_peek_uint(const char *json, const char *key, uint64_t *value)
{
    if (!json || !*json)
        return -ENOENT;
    struct json_object *root = json_tokener_parse(json), *v;
    int r = -ENOENT;
    if (!root || !json_object_is_type(root, json_type_object))
        r = -EINVAL;
    else if (json_object_object_get_ex(root, key, &v)) {
        r = value_has_type(v, MUSERD_CONFIG_UINT) ? 0 : -EINVAL;
        if (r == 0)
            *value = json_object_get_uint64(v);
    }
    json_object_put(root);
    return r;
}

/* SPDX-License-Identifier: MIT */
/*
 * D-Bus values as JSON, and properties as muserctl shows them. Reading any
 * value generically keeps `show` and `monitor` correct when muserd grows a
 * property: it is printed without muserctl knowing it. Only a few
 * properties get a friendlier form (the Client pair, the Config JSON, hex
 * PCI ids).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl/ctl.h"

static int read_basic(sd_bus_message *m, char type, json_object **ret)
{
    union {
        uint8_t y;
        int16_t n;
        uint16_t q;
        int32_t i;
        uint32_t u;
        int64_t x;
        uint64_t t;
        double d;
        int b;
        const char *s;
    } v;

    int r = sd_bus_message_read_basic(m, type, &v);
    if (r < 0)
        return r;
    switch (type) {
    case SD_BUS_TYPE_BYTE:
        *ret = json_object_new_int(v.y);
        break;
    case SD_BUS_TYPE_INT16:
        *ret = json_object_new_int(v.n);
        break;
    case SD_BUS_TYPE_UINT16:
        *ret = json_object_new_int(v.q);
        break;
    case SD_BUS_TYPE_INT32:
    case SD_BUS_TYPE_UNIX_FD:
        *ret = json_object_new_int(v.i);
        break;
    case SD_BUS_TYPE_UINT32:
        *ret = json_object_new_int64(v.u);
        break;
    case SD_BUS_TYPE_INT64:
        *ret = json_object_new_int64(v.x);
        break;
    case SD_BUS_TYPE_UINT64:
        *ret = json_object_new_uint64(v.t);
        break;
    case SD_BUS_TYPE_DOUBLE:
        *ret = json_object_new_double(v.d);
        break;
    case SD_BUS_TYPE_BOOLEAN:
        *ret = json_object_new_boolean(v.b);
        break;
    default: /* s, o, g */
        *ret = json_object_new_string(v.s);
        break;
    }
    return *ret ? 0 : -ENOMEM;
}

/* Elements up to the end of the container we are in, as a JSON array. */
static int read_elements(sd_bus_message *m, json_object **ret)
{
    _cleanup_(json_object_putp) json_object *a = json_object_new_array();

    if (!a)
        return -ENOMEM;
    for (;;) {
        int r = sd_bus_message_at_end(m, false);
        if (r < 0)
            return r;
        if (r > 0)
            break;
        json_object *v = NULL;
        r = ctl_read_json(m, &v);
        if (r < 0)
            return r;
        json_object_array_add(a, v);
    }
    *ret = TAKE_PTR(a);
    return 0;
}

/* An a{..}: a JSON object whose keys are the dict keys as text. */
static int read_dict(sd_bus_message *m, const char *contents, json_object **ret)
{
    _cleanup_(json_object_putp) json_object *o = json_object_new_object();
    _cleanup_free_ char *entry = strndup(contents + 1, strlen(contents) - 2); /* "{sv}" -> "sv" */
    int r;

    if (!o || !entry)
        return -ENOMEM;
    while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, entry)) > 0) {
        _cleanup_(json_object_putp) json_object *key = NULL;
        json_object *value = NULL;
        r = ctl_read_json(m, &key);
        if (r >= 0)
            r = ctl_read_json(m, &value);
        if (r < 0)
            return r;
        json_object_object_add(o, json_object_get_string(key), value);
        r = sd_bus_message_exit_container(m);
        if (r < 0)
            return r;
    }
    if (r < 0)
        return r;
    *ret = TAKE_PTR(o);
    return 0;
}

int ctl_read_json(sd_bus_message *m, json_object **ret)
{
    const char *contents;
    char type;

    int r = sd_bus_message_peek_type(m, &type, &contents);
    if (r < 0)
        return r;
    if (r == 0)
        return -EBADMSG; /* a value was expected */

    switch (type) {
    case SD_BUS_TYPE_VARIANT:
    case SD_BUS_TYPE_ARRAY:
    case SD_BUS_TYPE_STRUCT:
        r = sd_bus_message_enter_container(m, type, contents);
        if (r < 0)
            return r;
        if (type == SD_BUS_TYPE_VARIANT)
            r = ctl_read_json(m, ret);
        else if (type == SD_BUS_TYPE_ARRAY && contents[0] == SD_BUS_TYPE_DICT_ENTRY_BEGIN)
            r = read_dict(m, contents, ret);
        else
            r = read_elements(m, ret);
        if (r < 0)
            return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0) {
            json_object_put(*ret);
            *ret = NULL;
        }
        return r < 0 ? r : 0;
    default:
        return read_basic(m, type, ret);
    }
}

json_object *ctl_property_json(const char *name, json_object *v)
{
    if (strcmp(name, "Client") == 0 && json_object_is_type(v, json_type_array) &&
        json_object_array_length(v) == 2) {
        json_object *o = json_object_new_object();
        if (!o)
            return v;
        json_object_object_add(o, "pid", json_object_get(json_object_array_get_idx(v, 0)));
        json_object_object_add(o, "uid", json_object_get(json_object_array_get_idx(v, 1)));
        json_object_put(v);
        return o;
    }
    /* Config is JSON in a string; scripts want the object itself. */
    if (strcmp(name, "Config") == 0 && json_object_is_type(v, json_type_string)) {
        json_object *parsed = json_tokener_parse(json_object_get_string(v));
        if (parsed) {
            json_object_put(v);
            return parsed;
        }
    }
    return v;
}

static bool is_pci_id(const char *name)
{
    return strcmp(name, "VendorId") == 0 || strcmp(name, "DeviceId") == 0;
}

char *ctl_property_text(const char *name, json_object *v)
{
    char *s = NULL;
    int r = -1;

    switch (json_object_get_type(v)) {
    case json_type_null:
        return strdup("");
    case json_type_boolean:
        return strdup(json_object_get_boolean(v) ? "yes" : "no");
    case json_type_int:
        if (is_pci_id(name))
            r = asprintf(&s, "0x%04" PRIx64, (uint64_t)json_object_get_int64(v));
        else if (json_object_get_int64(v) == INT64_MAX)
            r = asprintf(&s, "%" PRIu64, json_object_get_uint64(v));
        else
            r = asprintf(&s, "%" PRId64, json_object_get_int64(v));
        return r < 0 ? NULL : s;
    case json_type_string:
        return strdup(json_object_get_string(v));
    case json_type_array: {
        /* Space-separated, as systemctl show prints lists. */
        size_t n = json_object_array_length(v), len = 0;
        FILE *f = open_memstream(&s, &len);
        if (!f)
            return NULL;
        for (size_t i = 0; i < n; i++) {
            _cleanup_free_ char *e = ctl_property_text("", json_object_array_get_idx(v, i));
            fprintf(f, "%s%s", i ? " " : "", e ? e : "");
        }
        return fclose(f) == 0 ? s : NULL;
    }
    case json_type_object:
        if (strcmp(name, "Client") == 0) {
            int64_t pid = json_object_get_int64(json_object_object_get(v, "pid"));
            int64_t uid = json_object_get_int64(json_object_object_get(v, "uid"));
            if (pid == 0)
                return strdup("none");
            r = asprintf(&s, "pid %" PRId64 " uid %" PRId64, pid, uid);
            return r < 0 ? NULL : s;
        }
        return strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE));
    default:
        return strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
    }
}

int ctl_read_properties(sd_bus_message *m, json_object **ret)
{
    _cleanup_(json_object_putp) json_object *o = json_object_new_object();
    int r;

    if (!o)
        return -ENOMEM;
    r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
    if (r < 0)
        return r;
    while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
        const char *name;
        json_object *v = NULL;
        r = sd_bus_message_read(m, "s", &name);
        if (r >= 0)
            r = ctl_read_json(m, &v);
        if (r < 0)
            return r;
        json_object_object_add(o, name, ctl_property_json(name, v));
        r = sd_bus_message_exit_container(m);
        if (r < 0)
            return r;
    }
    if (r < 0)
        return r;
    r = sd_bus_message_exit_container(m);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(o);
    return 0;
}

void ctl_print_json(json_object *v)
{
    int flags = JSON_C_TO_STRING_NOSLASHESCAPE;

    /* Pretty for a person at a terminal; one line for a pipe, where jq or a
     * script reads it. */
    flags |= isatty(STDOUT_FILENO) ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED
                                   : JSON_C_TO_STRING_PLAIN;
    puts(json_object_to_json_string_ext(v, flags));
}

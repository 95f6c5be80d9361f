/* SPDX-License-Identifier: MIT */
/*
 * A device's config: the JSON object an operator gives at create time,
 * checked against the keys the device type declares, so plugins never see an
 * unknown key or a value of the wrong type (and never link json-c).
 */
#pragma once

#include <json-c/json.h>
#include <muserd/plugin.h>

/*
 * Parse json (NULL or "" means {}) and check it against keys. Keys the host
 * itself reads (socket_owner, socket_group, socket_mode, io_thread, incoming) are
 * accepted too.
 * On failure return -EINVAL with *error set to a malloc()ed sentence naming
 * the key and what was expected.
 */
int device_config_parse(const char *json, const struct muserd_config_key *keys,
                        struct json_object **ret, char **error);

/* Typed getters: 0, or -ENOENT when absent. */
int device_config_string(struct json_object *config, const char *key, const char **value);
int device_config_uint(struct json_object *config, const char *key, uint64_t *value);
int device_config_bool(struct json_object *config, const char *key, bool *value);

/* One unsigned key of a config not yet parsed (the manager reads io_thread
 * before the device exists): 0, -ENOENT absent (or no config), -EINVAL not
 * JSON or not an unsigned number (device_config_parse says why later). */
int device_config_peek_uint(const char *json, const char *key, uint64_t *value);

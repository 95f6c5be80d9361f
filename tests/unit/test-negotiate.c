/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "vfu/negotiate.h"

static const struct vfu_server_caps server = {
    .max_msg_fds = 64,
    .max_data_xfer_size = 1048576,
    .max_dma_maps = 100000, /* above the spec's 65535: must be clamped */
    .pgsizes = 4096 | (2u << 20),
};

static const char qemu_json[] =
    "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576,"
    "\"pgsizes\":4096,\"max_dma_maps\":65535,"
    "\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":1048576},"
    "\"write_multiple\":true}}";

static struct vfu_version_req req_json(uint16_t major, uint16_t minor, const char *json)
{
    return (struct vfu_version_req){
        .major = major, .minor = minor, .json = json, .json_len = json ? strlen(json) : 0};
}

/* Negotiate a request expected to fail, and check nothing leaked out. */
static int negotiate_fail(const char *json)
{
    struct vfu_version_req req = req_json(0, 0, json);
    struct vfu_session_caps s;
    char *reply = NULL;
    const char *error = NULL;
    int r = vfu_negotiate(&req, &server, &s, &reply, &error);
    ck_assert_int_lt(r, 0);
    ck_assert_ptr_null(reply);
    ck_assert_ptr_nonnull(error);
    return r;
}

/* The reply's "capabilities" object; the root goes to *root for the caller to put. */
static json_object *reply_caps(const char *reply, json_object **root)
{
    json_object *caps;
    *root = json_tokener_parse(reply);
    ck_assert_ptr_nonnull(*root);
    ck_assert(json_object_object_get_ex(*root, "capabilities", &caps));
    ck_assert(json_object_is_type(caps, json_type_object));
    return caps;
}

static int64_t cap_int(json_object *caps, const char *key)
{
    json_object *v;
    ck_assert_msg(json_object_object_get_ex(caps, key, &v), "missing %s", key);
    ck_assert(json_object_is_type(v, json_type_int));
    return json_object_get_int64(v);
}

START_TEST(test_qemu)
{
    struct vfu_version_req req = req_json(0, 0, qemu_json);
    struct vfu_session_caps s;
    char *reply = NULL;
    const char *error = NULL;

    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), 0);
    ck_assert_uint_eq(s.minor, 0);
    ck_assert_uint_eq(s.client_max_msg_fds, 16);
    ck_assert_uint_eq(s.client_max_data_xfer, 1048576);
    ck_assert_uint_eq(s.max_data_xfer, server.max_data_xfer_size);
    ck_assert_uint_eq(s.max_dma_maps, 65535);
    ck_assert_uint_eq(s.pgsizes, 4096);
    ck_assert(s.write_multiple);
    ck_assert(s.client_sent_json);

    json_object *root, *v;
    json_object *caps = reply_caps(reply, &root);
    ck_assert_int_eq(cap_int(caps, "max_msg_fds"), 64);
    ck_assert_int_eq(cap_int(caps, "max_data_xfer_size"), 1048576);
    /* The negotiated page sizes, not all of ours. */
    ck_assert_int_eq(cap_int(caps, "pgsizes"), 4096);
    ck_assert_int_eq(cap_int(caps, "max_dma_maps"), 65535);
    ck_assert(json_object_object_get_ex(caps, "write_multiple", &v));
    ck_assert(json_object_get_boolean(v));
    ck_assert(!json_object_object_get_ex(caps, "migration", NULL));
    ck_assert(!json_object_object_get_ex(caps, "twin_socket", NULL));
    json_object_put(root);
    /* QEMU reads the reply into the buffer its own VERSION used. */
    ck_assert_uint_lt(strlen(reply), strlen(qemu_json));
    free(reply);
}
END_TEST

/* We offer no more DMA maps than the client proposed. */
START_TEST(test_fewer_maps)
{
    const char *json = "{\"capabilities\":{\"max_dma_maps\":100}}";
    struct vfu_version_req req = req_json(0, 0, json);
    struct vfu_session_caps s;
    char *reply = NULL;
    const char *error = NULL;

    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), 0);
    ck_assert_uint_eq(s.max_dma_maps, 100);
    json_object *root;
    ck_assert_int_eq(cap_int(reply_caps(reply, &root), "max_dma_maps"), 100);
    json_object_put(root);
    free(reply);
}
END_TEST

START_TEST(test_no_json)
{
    struct vfu_version_req req = req_json(0, 7, NULL);
    struct vfu_session_caps s;
    char *reply = NULL;
    const char *error = NULL;

    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), 0);
    ck_assert_uint_eq(s.minor, VFU_VERSION_MINOR); /* min(client, ours) */
    ck_assert_uint_eq(s.client_max_msg_fds, 1);
    ck_assert_uint_eq(s.client_max_data_xfer, 1048576);
    ck_assert_uint_eq(s.pgsizes, 4096);
    ck_assert_uint_eq(s.max_dma_maps, 65535);
    ck_assert(!s.write_multiple);
    ck_assert(!s.client_sent_json);

    json_object *root;
    json_object *caps = reply_caps(reply, &root);
    ck_assert(!json_object_object_get_ex(caps, "write_multiple", NULL));
    ck_assert_int_eq(cap_int(caps, "max_dma_maps"), 65535);
    json_object_put(root);
    free(reply);
}
END_TEST

START_TEST(test_partial_and_unknown)
{
    /* Unknown keys anywhere are ignored; unstated capabilities keep defaults;
     * write_multiple false is not echoed; trailing whitespace is fine. */
    const char *json = "{\"vendor\":[1,2],\"capabilities\":{\"max_msg_fds\":4,"
                       "\"twin_socket\":{\"supported\":true},\"future\":\"x\","
                       "\"write_multiple\":false}}\n ";
    struct vfu_version_req req = req_json(0, 0, json);
    struct vfu_session_caps s;
    char *reply = NULL;
    const char *error = NULL;

    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), 0);
    ck_assert_uint_eq(s.client_max_msg_fds, 4);
    ck_assert_uint_eq(s.client_max_data_xfer, 1048576);
    ck_assert(!s.write_multiple);
    ck_assert_ptr_null(strstr(reply, "write_multiple"));
    ck_assert_ptr_null(strstr(reply, "twin_socket"));
    free(reply);

    /* An object without "capabilities": defaults. */
    req = req_json(0, 0, "{}");
    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), 0);
    ck_assert_uint_eq(s.client_max_msg_fds, 1);
    ck_assert(s.client_sent_json);
    free(reply);

    /* Huge numbers clamp to what our fields hold; pgsizes intersects. */
    req = req_json(0, 0,
                   "{\"capabilities\":{\"max_msg_fds\":99999999999,"
                   "\"pgsizes\":18446744073709547520}}");
    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), 0);
    ck_assert_uint_eq(s.client_max_msg_fds, UINT32_MAX);
    ck_assert_uint_eq(s.pgsizes, 4096 | (2u << 20));
    free(reply);
}
END_TEST

START_TEST(test_json_without_nul)
{
    /* json_len bounds the text: what follows must not be read. */
    char buf[] = "{\"capabilities\":{\"max_msg_fds\":3}}GARBAGE";
    struct vfu_version_req req = {.json = buf, .json_len = strlen(buf) - 7};
    struct vfu_session_caps s;
    char *reply = NULL;
    const char *error = NULL;

    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), 0);
    ck_assert_uint_eq(s.client_max_msg_fds, 3);
    free(reply);
    reply = NULL;

    req.json_len = strlen(buf);
    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), -EINVAL);
    ck_assert_ptr_null(reply);
}
END_TEST

START_TEST(test_bad_json)
{
    ck_assert_int_eq(negotiate_fail("{\"capabilities\":"), -EINVAL);
    ck_assert_int_eq(negotiate_fail("not json"), -EINVAL);
    ck_assert_int_eq(negotiate_fail("[1,2,3]"), -EINVAL);
    ck_assert_int_eq(negotiate_fail("42"), -EINVAL);
    ck_assert_int_eq(negotiate_fail("{} {}"), -EINVAL);
    ck_assert_int_eq(negotiate_fail("{\"capabilities\":[]}"), -EINVAL);
    ck_assert_int_eq(negotiate_fail("{\"capabilities\":7}"), -EINVAL);
}
END_TEST

START_TEST(test_wrong_types)
{
    const char *bad[] = {
        "{\"capabilities\":{\"max_msg_fds\":\"8\"}}",
        "{\"capabilities\":{\"max_msg_fds\":8.5}}",
        "{\"capabilities\":{\"max_msg_fds\":-1}}",
        "{\"capabilities\":{\"max_msg_fds\":true}}",
        "{\"capabilities\":{\"max_data_xfer_size\":0}}",
        "{\"capabilities\":{\"max_data_xfer_size\":null}}",
        "{\"capabilities\":{\"pgsizes\":0}}",
        "{\"capabilities\":{\"pgsizes\":8192}}", /* nothing in common with 4096 */
        "{\"capabilities\":{\"max_dma_maps\":\"many\"}}",
        "{\"capabilities\":{\"migration\":true}}",
        "{\"capabilities\":{\"migration\":{\"pgsize\":0}}}",
        "{\"capabilities\":{\"migration\":{\"pgsize\":\"4k\"}}}",
        "{\"capabilities\":{\"migration\":{\"max_bitmap_size\":-1}}}",
        "{\"capabilities\":{\"migration\":{\"max_bitmap_size\":0}}}",
        "{\"capabilities\":{\"write_multiple\":1}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(negotiate_fail(bad[i]) == -EINVAL, "accepted %s", bad[i]);
}
END_TEST

/* QEMU 10.2's VERSION, byte for byte what it proposes for migration. */
static const char qemu102_json[] =
    "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576,"
    "\"pgsizes\":4096,\"max_dma_maps\":65535,"
    "\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":268435456},"
    "\"write_multiple\":true}}";

/* The reply's "migration" object, or NULL; *root for the caller to put. */
static json_object *reply_migration(const char *reply, json_object **root)
{
    json_object *mig;
    if (!json_object_object_get_ex(reply_caps(reply, root), "migration", &mig))
        return NULL;
    ck_assert(json_object_is_type(mig, json_type_object));
    return mig;
}

START_TEST(test_migration)
{
    struct vfu_server_caps mig_server = server;
    struct vfu_session_caps s;
    char *reply = NULL;
    const char *error = NULL;
    json_object *root, *mig;

    mig_server.migration = true;
    /* What QEMU 10.2 proposes and accepts: pgsize a multiple of 4096,
     * max_bitmap_size at most 256 MiB. */
    struct vfu_version_req req = req_json(0, 0, qemu102_json);
    ck_assert_int_eq(vfu_negotiate(&req, &mig_server, &s, &reply, &error), 0);
    ck_assert(s.migration);
    ck_assert_uint_eq(s.mig_max_bitmap, 268435456);
    mig = reply_migration(reply, &root);
    ck_assert_ptr_nonnull(mig);
    ck_assert_int_eq(cap_int(mig, "pgsize"), 4096);
    ck_assert_int_eq(cap_int(mig, "max_bitmap_size"), 268435456);
    json_object_put(root);
    /* QEMU reads the reply into the buffer its own VERSION used. */
    ck_assert_uint_le(strlen(reply), strlen(qemu102_json));
    free(reply);

    /* A smaller bitmap limit from the client is what we keep to. */
    req = req_json(0, 0, qemu_json);
    ck_assert_int_eq(vfu_negotiate(&req, &mig_server, &s, &reply, &error), 0);
    ck_assert_uint_eq(s.mig_max_bitmap, 1048576);
    mig = reply_migration(reply, &root);
    ck_assert_ptr_nonnull(mig);
    ck_assert_int_eq(cap_int(mig, "max_bitmap_size"), 1048576);
    json_object_put(root);
    free(reply);

    /* A larger one is cut to ours; an empty object takes our defaults. */
    req = req_json(0, 0, "{\"capabilities\":{\"migration\":{\"max_bitmap_size\":1099511627776}}}");
    ck_assert_int_eq(vfu_negotiate(&req, &mig_server, &s, &reply, &error), 0);
    ck_assert_uint_eq(s.mig_max_bitmap, VFU_MIGRATION_MAX_BITMAP);
    free(reply);
    req = req_json(0, 0, "{\"capabilities\":{\"migration\":{}}}");
    ck_assert_int_eq(vfu_negotiate(&req, &mig_server, &s, &reply, &error), 0);
    ck_assert(s.migration);
    ck_assert_uint_eq(s.mig_max_bitmap, VFU_MIGRATION_MAX_BITMAP);
    free(reply);

    /* The subset rule: not offered unless the client proposed it ... */
    req = req_json(0, 0, "{\"capabilities\":{\"max_msg_fds\":4}}");
    ck_assert_int_eq(vfu_negotiate(&req, &mig_server, &s, &reply, &error), 0);
    ck_assert(!s.migration);
    ck_assert_ptr_null(reply_migration(reply, &root));
    json_object_put(root);
    free(reply);
    /* ... nor to SPDK, which sends no JSON at all and still gets in ... */
    req = req_json(0, 0, NULL);
    ck_assert_int_eq(vfu_negotiate(&req, &mig_server, &s, &reply, &error), 0);
    ck_assert(!s.migration);
    ck_assert_ptr_null(strstr(reply, "migration"));
    free(reply);
    /* ... nor by a device that cannot migrate. */
    req = req_json(0, 0, qemu102_json);
    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), 0);
    ck_assert(!s.migration);
    ck_assert_ptr_null(strstr(reply, "migration"));
    free(reply);
}
END_TEST

START_TEST(test_major)
{
    struct vfu_version_req req = req_json(1, 0, qemu_json);
    struct vfu_session_caps s;
    char *reply = NULL;
    const char *error = NULL;

    ck_assert_int_eq(vfu_negotiate(&req, &server, &s, &reply, &error), -ENOTSUP);
    ck_assert_ptr_null(reply);
    ck_assert_ptr_nonnull(error);
}
END_TEST

static Suite *negotiate_suite(void)
{
    Suite *s = suite_create("negotiate");
    TCase *tc = tcase_create("version");
    tcase_add_test(tc, test_qemu);
    tcase_add_test(tc, test_fewer_maps);
    tcase_add_test(tc, test_no_json);
    tcase_add_test(tc, test_partial_and_unknown);
    tcase_add_test(tc, test_json_without_nul);
    tcase_add_test(tc, test_bad_json);
    tcase_add_test(tc, test_wrong_types);
    tcase_add_test(tc, test_major);
    tcase_add_test(tc, test_migration);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(negotiate_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* SPDX-License-Identifier: MIT */
/*
 * Every vfio-user command a VMM sends, against one daemon hosting several
 * devices (timer t0, ram r0, timer t1), checked for what a VMM relies on.
 */
#include <check.h>
#include <errno.h>
#include <json-c/json.h>
#include <linux/pci_regs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../plugins/ram/ram-regs.h"
#include "../../plugins/timer/timer-regs.h"
#include "helpers/testutil.h"

#define RAM_SIZE (1u << 20)

static struct test_daemon *daemon_;

static void setup(void)
{
    daemon_ =
        tu_daemon("timer", "t0", NULL, "ram", "r0", "{\"size\":1048576}", "timer", "t1", NULL);
}

static void teardown(void)
{
    tu_stop(daemon_);
    daemon_ = NULL;
}

/* A connected client that has not negotiated yet. */
static struct vfu_client *raw_client(const char *id)
{
    struct vfu_client *c;
    ck_assert_int_eq(vfu_client_connect(test_daemon_socket(daemon_, id), &c), 0);
    ck_assert_int_eq(tu_set_socket_timeout(vfu_client_fd(c), TU_RECV_TIMEOUT_MS), 0);
    return c;
}

/* Send a command and return its reply (malloc()ed), asserting the id matches. */
static struct vfu_header *roundtrip(struct vfu_client *c, uint16_t cmd, const void *payload,
                                    size_t len)
{
    uint16_t id;
    struct vfu_header *reply;
    ck_assert_int_eq(vfu_client_send_cmd(c, cmd, 0, payload, len, NULL, 0, &id), 0);
    ck_assert_int_eq(vfu_client_recv_reply(c, &reply, NULL, 0, NULL), 0);
    ck_assert_uint_eq(reply->msg_id, id);
    ck_assert_uint_eq(reply->command, cmd);
    return reply;
}

static uint32_t json_cap(json_object *root, const char *key)
{
    json_object *caps, *v;
    ck_assert(json_object_object_get_ex(root, "capabilities", &caps));
    ck_assert_msg(json_object_object_get_ex(caps, key, &v), "server caps lack %s", key);
    return (uint32_t)json_object_get_int64(v);
}

START_TEST(test_version_qemu_json)
{
    const char *ids[] = {"t0", "r0", "t1"};
    for (size_t i = 0; i < 3; i++) {
        struct vfu_client *c;
        char *server_json = NULL;
        ck_assert_int_eq(vfu_client_connect(test_daemon_socket(daemon_, ids[i]), &c), 0);
        ck_assert_int_eq(vfu_client_negotiate(c, vfu_client_qemu_caps_json, &server_json), 0);
        ck_assert_ptr_nonnull(server_json);
        json_object *root = json_tokener_parse(server_json);
        ck_assert_msg(root, "server JSON does not parse: %s", server_json);
        ck_assert_uint_ge(json_cap(root, "max_msg_fds"), 1);
        ck_assert_uint_eq(json_cap(root, "max_data_xfer_size"), VFU_SERVER_MAX_DATA_XFER);
        ck_assert_uint_eq(json_cap(root, "pgsizes") & 4096, 4096);
        ck_assert_uint_ge(json_cap(root, "max_dma_maps"), 1);
        json_object_put(root);
        free(server_json);
        /* The connection works after negotiation. */
        struct vfu_device_info info;
        ck_assert_int_eq(vfu_client_device_info(c, &info), 0);
        vfu_client_free(c);
    }
}
END_TEST

START_TEST(test_version_without_json)
{
    struct vfu_client *c;
    int r = tu_connect(test_daemon_socket(daemon_, "r0"), NULL, TU_TIMEOUT_MS, &c);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_ID), RAM_ID_MAGIC);
    vfu_client_free(c);
}
END_TEST

/* A VERSION the server cannot accept gets an error reply; nothing else breaks. */
static void expect_version_refused(const char *json, uint16_t major)
{
    struct vfu_client *c = raw_client("t0");
    size_t len = sizeof(struct vfu_version) + (json ? strlen(json) + 1 : 0);
    struct vfu_version *v = calloc(1, len);
    v->major = major;
    v->minor = VFU_VERSION_MINOR;
    if (json)
        memcpy(v->data, json, strlen(json) + 1);
    struct vfu_header *reply = roundtrip(c, VFU_CMD_VERSION, v, len);
    ck_assert_msg(reply->flags & VFU_FLAG_ERROR, "VERSION with %s was accepted",
                  json ? json : "(no JSON)");
    ck_assert_uint_ne(reply->error, 0);
    free(reply);
    free(v);
    vfu_client_free(c);

    /* The same device takes a proper client afterwards, and so do the others. */
    struct vfu_client *good = tu_open(daemon_, "t0");
    ck_assert_uint_eq(tu_rd32(good, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
    vfu_client_free(good);
    good = tu_open(daemon_, "r0");
    ck_assert_uint_eq(tu_rd32(good, RAM_REGS_BAR, RAM_REG_ID), RAM_ID_MAGIC);
    vfu_client_free(good);
}

START_TEST(test_version_bad_json)
{
    expect_version_refused("{\"capabilities\": {", VFU_VERSION_MAJOR);
    expect_version_refused("[1, 2, 3]", VFU_VERSION_MAJOR);
    expect_version_refused("{\"capabilities\":{\"max_msg_fds\":\"many\"}}", VFU_VERSION_MAJOR);
    expect_version_refused("{\"capabilities\":{\"max_data_xfer_size\":-5}}", VFU_VERSION_MAJOR);
    expect_version_refused(NULL, VFU_VERSION_MAJOR + 1);
}
END_TEST

START_TEST(test_command_before_version)
{
    struct vfu_client *c = raw_client("t0");
    struct vfu_device_info req = {.argsz = sizeof(req)};
    struct vfu_header *reply = roundtrip(c, VFU_CMD_DEVICE_GET_INFO, &req, sizeof(req));
    ck_assert(reply->flags & VFU_FLAG_ERROR);
    free(reply);
    vfu_client_free(c);
}
END_TEST

START_TEST(test_unknown_and_server_commands)
{
    struct vfu_client *c = tu_open(daemon_, "t0");
    uint8_t junk[16] = {0};
    uint16_t cmds[] = {VFU_CMD_DIRTY_PAGES, VFU_CMD_DMA_READ, VFU_CMD_DMA_WRITE, 200, 0};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        struct vfu_header *reply = roundtrip(c, cmds[i], junk, sizeof(junk));
        ck_assert_msg(reply->flags & VFU_FLAG_ERROR, "command %u accepted", cmds[i]);
        free(reply);
    }
    /* Still serving. */
    ck_assert_uint_eq(tu_rd32(c, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
    vfu_client_free(c);
}
END_TEST

START_TEST(test_device_info)
{
    const char *ids[] = {"t0", "r0", "t1"};
    for (size_t i = 0; i < 3; i++) {
        struct vfu_client *c = tu_open(daemon_, ids[i]);
        struct vfu_device_info info;
        ck_assert_int_eq(vfu_client_device_info(c, &info), 0);
        ck_assert_uint_eq(info.flags & (VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET),
                          VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
        ck_assert_uint_eq(info.num_regions, VFIO_PCI_NUM_REGIONS);
        ck_assert_uint_eq(info.num_irqs, VFIO_PCI_NUM_IRQS);
        vfu_client_free(c);
    }
}
END_TEST

struct region_expect {
    uint64_t size;
    bool mmap;
};

static void check_regions(const char *id, const struct region_expect expect[VFIO_PCI_NUM_REGIONS])
{
    const uint32_t rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    struct vfu_client *c = tu_open(daemon_, id);

    for (uint32_t i = 0; i < VFIO_PCI_NUM_REGIONS; i++) {
        struct vfu_region_info info;
        struct vfu_sparse_mmap_area areas[4];
        uint32_t nr = 99;
        int fd = -2;
        ck_assert_int_eq(vfu_client_region_info(c, i, &info, areas, 4, &nr, &fd), 0);
        ck_assert_uint_eq(info.index, i);
        ck_assert_msg(info.size == expect[i].size, "%s region %u: size %llu, expected %llu", id, i,
                      (unsigned long long)info.size, (unsigned long long)expect[i].size);
        if (expect[i].size == 0) {
            ck_assert_msg(info.flags == 0, "%s unused region %u has flags %#x", id, i, info.flags);
            ck_assert_int_eq(fd, -1);
            continue;
        }
        ck_assert_uint_eq(info.flags & rw, rw);
        if (!expect[i].mmap) {
            ck_assert_msg(!(info.flags & VFIO_REGION_INFO_FLAG_MMAP), "%s region %u mmap", id, i);
            ck_assert_int_eq(fd, -1);
            ck_assert_uint_eq(nr, 0);
            continue;
        }
        ck_assert(info.flags & VFIO_REGION_INFO_FLAG_MMAP);
        ck_assert(info.flags & VFIO_REGION_INFO_FLAG_CAPS);
        ck_assert_int_ge(fd, 0);
        ck_assert_uint_eq(nr, 1);
        ck_assert_uint_eq(areas[0].offset, 0);
        ck_assert_uint_eq(areas[0].size, expect[i].size);
        close(fd);
    }

    /* Past the last region. */
    struct vfu_region_info info;
    ck_assert_int_eq(vfu_client_region_info(c, VFIO_PCI_NUM_REGIONS, &info, NULL, 0, NULL, NULL),
                     -EINVAL);
    ck_assert_int_eq(vfu_client_region_info(c, UINT32_MAX, &info, NULL, 0, NULL, NULL), -EINVAL);
    vfu_client_free(c);
}

START_TEST(test_region_info)
{
    const struct region_expect timer[VFIO_PCI_NUM_REGIONS] = {
        [TIMER_REGS_BAR] = {TIMER_REGS_SIZE, false},
        [TIMER_MSIX_BAR] = {TIMER_MSIX_SIZE, false},
        [VFIO_PCI_CONFIG_REGION_INDEX] = {4096, false},
    };
    const struct region_expect ram[VFIO_PCI_NUM_REGIONS] = {
        [RAM_REGS_BAR] = {RAM_REGS_SIZE, false},
        [RAM_MEM_BAR] = {RAM_SIZE, true},
        [RAM_MSIX_BAR] = {RAM_MSIX_SIZE, false},
        [VFIO_PCI_CONFIG_REGION_INDEX] = {4096, false},
    };
    check_regions("t0", timer);
    check_regions("r0", ram);
    check_regions("t1", timer);
}
END_TEST

/* A REGION_INFO with room for the fixed part only: the reply says how much to
 * ask for, and claims no MMAP and no caps, since it brings neither the fd
 * nor the sparse areas. The full-size retry gets all of it. */
START_TEST(test_region_info_short)
{
    struct vfu_client *c = tu_open(daemon_, "r0");
    struct vfu_region_info req = {.argsz = sizeof(req), .index = RAM_MEM_BAR};
    void *buf = NULL;
    size_t len = 0, nr_fds = 0;
    int fds[2];

    ck_assert_int_eq(vfu_client_call(c, VFU_CMD_DEVICE_GET_REGION_INFO, &req, sizeof(req), NULL, 0,
                                     &buf, &len, fds, 2, &nr_fds),
                     0);
    ck_assert_uint_eq(len, sizeof(req));
    ck_assert_uint_eq(nr_fds, 0);
    struct vfu_region_info info;
    memcpy(&info, buf, sizeof(info));
    ck_assert_uint_gt(info.argsz, sizeof(info));
    ck_assert_uint_eq(info.size, RAM_SIZE);
    ck_assert_msg(!(info.flags & (VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS)),
                  "short reply claims flags %#x", info.flags);

    req.argsz = info.argsz;
    free(buf);
    buf = NULL;
    ck_assert_int_eq(vfu_client_call(c, VFU_CMD_DEVICE_GET_REGION_INFO, &req, sizeof(req), NULL, 0,
                                     &buf, &len, fds, 2, &nr_fds),
                     0);
    ck_assert_uint_eq(len, req.argsz);
    ck_assert_uint_eq(nr_fds, 1);
    memcpy(&info, buf, sizeof(info));
    ck_assert(info.flags & VFIO_REGION_INFO_FLAG_MMAP);
    ck_assert(info.flags & VFIO_REGION_INFO_FLAG_CAPS);
    close(fds[0]);
    free(buf);
    vfu_client_free(c);
}
END_TEST

/* A client that takes no fds (max_msg_fds 0) is sent none: the mappable BAR
 * is reported without MMAP, and stays reachable through REGION_READ. */
START_TEST(test_region_info_client_takes_no_fds)
{
    struct vfu_client *c;
    int r = vfu_client_connect(test_daemon_socket(daemon_, "r0"), &c);
    ck_assert_msg(r == 0, "connecting: %s", strerror(-r));
    /* By hand: our client library refuses to advertise 0 itself. */
    const char json[] = "{\"capabilities\":{\"max_msg_fds\":0}}";
    uint8_t version[sizeof(struct vfu_version) + sizeof(json)];
    struct vfu_version v = {.major = VFU_VERSION_MAJOR, .minor = VFU_VERSION_MINOR};
    memcpy(version, &v, sizeof(v));
    memcpy(version + sizeof(v), json, sizeof(json));
    void *vreply = NULL;
    size_t vlen = 0;
    ck_assert_int_eq(vfu_client_call(c, VFU_CMD_VERSION, version, sizeof(version), NULL, 0, &vreply,
                                     &vlen, NULL, 0, NULL),
                     0);
    free(vreply);
    struct vfu_region_info req = {.argsz = 4096, .index = RAM_MEM_BAR};
    void *buf = NULL;
    size_t len = 0, nr_fds = 0;
    int fds[2];
    ck_assert_int_eq(vfu_client_call(c, VFU_CMD_DEVICE_GET_REGION_INFO, &req, sizeof(req), NULL, 0,
                                     &buf, &len, fds, 2, &nr_fds),
                     0);
    ck_assert_uint_eq(nr_fds, 0);
    struct vfu_region_info info;
    memcpy(&info, buf, sizeof(info));
    ck_assert_msg(!(info.flags & VFIO_REGION_INFO_FLAG_MMAP), "flags %#x claim MMAP", info.flags);
    ck_assert_uint_eq(info.size, RAM_SIZE);
    free(buf);
    uint32_t word;
    ck_assert_int_eq(vfu_client_region_read(c, RAM_MEM_BAR, 0, &word, 4), 0);
    vfu_client_free(c);
}
END_TEST

/* The RAM BAR through the fd the server hands out and through REGION_READ/WRITE
 * is the same memory. */
START_TEST(test_ram_mmap)
{
    struct vfu_client *c = tu_open(daemon_, "r0");
    struct vfu_region_info info;
    int fd;
    ck_assert_int_eq(vfu_client_region_info(c, RAM_MEM_BAR, &info, NULL, 0, NULL, &fd), 0);
    ck_assert_int_ge(fd, 0);
    uint8_t *map =
        mmap(NULL, info.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)info.offset);
    ck_assert_ptr_ne(map, MAP_FAILED);
    close(fd);

    static uint8_t pattern[64 * 1024], back[64 * 1024];
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)(i * 7 + 3);

    memcpy(map + 0x10000, pattern, sizeof(pattern));
    ck_assert_int_eq(vfu_client_region_read(c, RAM_MEM_BAR, 0x10000, back, sizeof(back)), 0);
    ck_assert_mem_eq(back, pattern, sizeof(pattern));

    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)~pattern[i];
    ck_assert_int_eq(vfu_client_region_write(c, RAM_MEM_BAR, RAM_SIZE - sizeof(pattern), pattern,
                                             sizeof(pattern)),
                     0);
    ck_assert_mem_eq(map + RAM_SIZE - sizeof(pattern), pattern, sizeof(pattern));

    /* One byte past the BAR is refused. */
    ck_assert_int_eq(vfu_client_region_read(c, RAM_MEM_BAR, RAM_SIZE - 4, back, 8), -EINVAL);
    munmap(map, info.size);
    vfu_client_free(c);
}
END_TEST

static uint32_t wait_doorbell_count(struct vfu_client *c, uint32_t want)
{
    uint64_t deadline = test_now_ns() + TU_TIMEOUT_MS * 1000000ull;
    uint32_t n;
    while ((n = tu_rd32(c, RAM_REGS_BAR, RAM_REG_DOORBELL_COUNT)) != want &&
           test_now_ns() < deadline)
        usleep(1000);
    return n;
}

START_TEST(test_region_io_fds)
{
    struct vfu_client *c = tu_open(daemon_, "r0");
    struct vfu_sub_region_ioeventfd subs[4];
    int fds[4];

    ck_assert_int_eq(vfu_client_region_io_fds(c, RAM_REGS_BAR, subs, fds, 4), 1);
    ck_assert_uint_eq(subs[0].offset, RAM_REG_DOORBELL);
    ck_assert_uint_eq(subs[0].size, 4);
    ck_assert_uint_eq(subs[0].type, VFU_IO_FD_TYPE_IOEVENTFD);
    ck_assert_uint_eq(subs[0].fd_index, 0);
    ck_assert_int_ge(fds[0], 0);

    uint32_t before = tu_rd32(c, RAM_REGS_BAR, RAM_REG_DOORBELL_COUNT);
    uint64_t one = 1;
    ck_assert_int_eq(write(fds[0], &one, sizeof(one)), sizeof(one));
    ck_assert_uint_eq(wait_doorbell_count(c, before + 1), before + 1);
    /* What KVM does for two guest writes before the device looked. */
    ck_assert_int_eq(write(fds[0], &one, sizeof(one)), sizeof(one));
    ck_assert_int_eq(write(fds[0], &one, sizeof(one)), sizeof(one));
    ck_assert_uint_eq(wait_doorbell_count(c, before + 3), before + 3);
    /* A trapped write to the doorbell rings it too. */
    tu_wr32(c, RAM_REGS_BAR, RAM_REG_DOORBELL, 1);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_DOORBELL_COUNT), before + 4);
    close(fds[0]);

    /* Regions without ioeventfds have none; bad indexes are refused. */
    ck_assert_int_eq(vfu_client_region_io_fds(c, RAM_MEM_BAR, subs, fds, 4), 0);
    ck_assert_int_eq(vfu_client_region_io_fds(c, VFIO_PCI_NUM_REGIONS, subs, fds, 4), -EINVAL);
    vfu_client_free(c);
}
END_TEST

static void check_irqs(const char *id, const uint32_t counts[VFIO_PCI_NUM_IRQS])
{
    struct vfu_client *c = tu_open(daemon_, id);
    for (uint32_t i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
        struct vfu_irq_info info;
        ck_assert_int_eq(vfu_client_irq_info(c, i, &info), 0);
        ck_assert_uint_eq(info.index, i);
        ck_assert_msg(info.count == counts[i], "%s irq index %u: count %u, expected %u", id, i,
                      info.count, counts[i]);
        ck_assert(info.flags & VFIO_IRQ_INFO_EVENTFD);
        if (i == VFIO_PCI_INTX_IRQ_INDEX)
            ck_assert(info.flags & VFIO_IRQ_INFO_AUTOMASKED);
    }
    struct vfu_irq_info info;
    ck_assert_int_eq(vfu_client_irq_info(c, VFIO_PCI_NUM_IRQS, &info), -EINVAL);
    ck_assert_int_eq(vfu_client_irq_info(c, UINT32_MAX, &info), -EINVAL);
    vfu_client_free(c);
}

START_TEST(test_irq_info)
{
    const uint32_t timer[VFIO_PCI_NUM_IRQS] = {1, TIMER_MSI_VECTORS, TIMER_MSIX_VECTORS, 1, 1};
    const uint32_t ram[VFIO_PCI_NUM_IRQS] = {1, RAM_MSI_VECTORS, RAM_MSIX_VECTORS, 1, 1};
    check_irqs("t0", timer);
    check_irqs("r0", ram);
    check_irqs("t1", timer);
}
END_TEST

START_TEST(test_set_irqs)
{
    const uint32_t MSIX = VFIO_PCI_MSIX_IRQ_INDEX;
    const uint32_t trigger_fd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    const uint32_t trigger_none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    const uint32_t trigger_bool = VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER;
    struct vfu_client *c = tu_open(daemon_, "t0");
    int fds[2] = {tu_eventfd_checked(), tu_eventfd_checked()};

    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX, trigger_fd, 0, 2, fds, 2, NULL), 0);
    /* A loopback trigger (VFIO semantics) signals exactly the vector named. */
    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX, trigger_none, 1, 1, NULL, 0, NULL), 0);
    ck_assert_uint_eq(tu_eventfd_read(fds[1]), 1);
    ck_assert_uint_eq(tu_eventfd_read(fds[0]), 0);
    const uint8_t bools[2] = {1, 0};
    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX, trigger_bool, 0, 2, NULL, 0, bools), 0);
    ck_assert_uint_eq(tu_eventfd_read(fds[0]), 1);
    ck_assert_uint_eq(tu_eventfd_read(fds[1]), 0);

    /* Malformed requests are refused and change nothing. */
    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX, trigger_fd, 0, 1, fds, 2, NULL), -EINVAL);
    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX, trigger_fd, 2, 1, fds, 1, NULL), -EINVAL);
    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX, trigger_fd, 1, UINT32_MAX, fds, 1, NULL),
                     -EINVAL);
    ck_assert_int_eq(vfu_client_set_irqs(c, VFIO_PCI_NUM_IRQS, trigger_fd, 0, 1, fds, 1, NULL),
                     -EINVAL);
    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX, trigger_none, 1, 1, NULL, 0, NULL), 0);
    ck_assert_uint_eq(tu_eventfd_read(fds[1]), 1);

    /* DATA_NONE with count 0 tears every vector down: nothing is signalled. */
    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX, trigger_none, 0, 0, NULL, 0, NULL), 0);
    ck_assert_int_eq(vfu_client_set_irqs(c, MSIX, trigger_none, 0, 2, NULL, 0, NULL), 0);
    ck_assert_uint_eq(tu_eventfd_read(fds[0]), 0);
    ck_assert_uint_eq(tu_eventfd_read(fds[1]), 0);

    close(fds[0]);
    close(fds[1]);
    vfu_client_free(c);
}
END_TEST

static void check_ids(const char *id, uint16_t vendor, uint16_t device, uint32_t class_code)
{
    struct vfu_client *c = tu_open(daemon_, id);
    ck_assert_uint_eq(tu_rd16(c, TU_CFG, PCI_VENDOR_ID), vendor);
    ck_assert_uint_eq(tu_rd16(c, TU_CFG, PCI_DEVICE_ID), device);
    ck_assert_uint_eq(tu_rd32(c, TU_CFG, PCI_CLASS_REVISION) >> 8, class_code);
    /* Identity is read-only. */
    tu_wr16(c, TU_CFG, PCI_VENDOR_ID, 0x1234);
    ck_assert_uint_eq(tu_rd16(c, TU_CFG, PCI_VENDOR_ID), vendor);
    vfu_client_free(c);
}

START_TEST(test_config_ids)
{
    check_ids("t0", TIMER_PCI_VENDOR_ID, TIMER_PCI_DEVICE_ID, TIMER_PCI_CLASS);
    check_ids("r0", RAM_PCI_VENDOR_ID, RAM_PCI_DEVICE_ID, RAM_PCI_CLASS);
    check_ids("t1", TIMER_PCI_VENDOR_ID, TIMER_PCI_DEVICE_ID, TIMER_PCI_CLASS);
}
END_TEST

/* What a guest's BAR sizing reads back after writing all ones. */
static uint32_t size_bar(struct vfu_client *c, uint32_t bar)
{
    uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * bar;
    uint32_t old = tu_rd32(c, TU_CFG, reg);
    tu_wr32(c, TU_CFG, reg, 0xffffffffu);
    uint32_t mask = tu_rd32(c, TU_CFG, reg);
    tu_wr32(c, TU_CFG, reg, old);
    return mask;
}

START_TEST(test_config_bar_sizing)
{
    struct vfu_client *c = tu_open(daemon_, "t0");
    ck_assert_uint_eq(size_bar(c, TIMER_REGS_BAR), ~(uint32_t)(TIMER_REGS_SIZE - 1));
    ck_assert_uint_eq(size_bar(c, TIMER_MSIX_BAR), ~(uint32_t)(TIMER_MSIX_SIZE - 1));
    for (uint32_t bar = 2; bar < 6; bar++)
        ck_assert_uint_eq(size_bar(c, bar), 0);
    /* An address the guest assigns reads back. */
    tu_wr32(c, TU_CFG, PCI_BASE_ADDRESS_0, 0xfebf1000u);
    ck_assert_uint_eq(tu_rd32(c, TU_CFG, PCI_BASE_ADDRESS_0), 0xfebf1000u);
    vfu_client_free(c);

    c = tu_open(daemon_, "r0");
    const uint32_t mem64_pref = PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH;
    ck_assert_uint_eq(size_bar(c, RAM_REGS_BAR), ~(uint32_t)(RAM_REGS_SIZE - 1));
    ck_assert_uint_eq(size_bar(c, RAM_MEM_BAR), ~(uint32_t)(RAM_SIZE - 1) | mem64_pref);
    ck_assert_uint_eq(size_bar(c, RAM_MEM_BAR + 1), 0xffffffffu); /* upper half */
    ck_assert_uint_eq(size_bar(c, RAM_MSIX_BAR), ~(uint32_t)(RAM_MSIX_SIZE - 1));
    ck_assert_uint_eq(size_bar(c, 1), 0);
    ck_assert_uint_eq(size_bar(c, 5), 0);
    /* Config space ends at 4 KiB. */
    uint32_t v;
    ck_assert_int_eq(vfu_client_region_read(c, TU_CFG, 4096, &v, 4), -EINVAL);
    vfu_client_free(c);
}
END_TEST

START_TEST(test_write_multi)
{
    struct vfu_client *c = tu_open(daemon_, "r0");
    struct vfu_write_one wrs[3] = {
        {.offset = RAM_REG_SCRATCH, .region = RAM_REGS_BAR, .count = 4},
        {.offset = RAM_REG_DMA_ADDR, .region = RAM_REGS_BAR, .count = 8},
        {.offset = RAM_REG_DMA_LEN, .region = RAM_REGS_BAR, .count = 4},
    };
    uint32_t scratch = 0x11223344, len = 0x200;
    uint64_t addr = 0x1122334455667788ull;
    memcpy(wrs[0].data, &scratch, 4);
    memcpy(wrs[1].data, &addr, 8);
    memcpy(wrs[2].data, &len, 4);
    ck_assert_int_eq(vfu_client_write_multi(c, wrs, 3), 3);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_SCRATCH), scratch);
    ck_assert_uint_eq(tu_rd64(c, RAM_REGS_BAR, RAM_REG_DMA_ADDR), addr);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_DMA_LEN), len);

    /* A write to a region that does not exist is refused. */
    wrs[0].region = VFIO_PCI_NUM_REGIONS;
    ck_assert_int_lt(vfu_client_write_multi(c, wrs, 1), 0);
    /* More than 8 bytes of data cannot be in one coalesced write. */
    wrs[0].region = RAM_REGS_BAR;
    wrs[0].count = 16;
    ck_assert_int_lt(vfu_client_write_multi(c, wrs, 1), 0);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_SCRATCH), scratch);

    /* A bad write in the middle of a batch fails the batch but does not
     * drop the writes after it (QEMU posts batches and never sees the error). */
    wrs[0].count = 4;
    scratch = 0x55667788;
    memcpy(wrs[0].data, &scratch, 4);
    wrs[1].region = VFIO_PCI_NUM_REGIONS;
    len = 0x400;
    memcpy(wrs[2].data, &len, 4);
    ck_assert_int_eq(vfu_client_write_multi(c, wrs, 3), -EINVAL);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_SCRATCH), scratch);
    ck_assert_uint_eq(tu_rd32(c, RAM_REGS_BAR, RAM_REG_DMA_LEN), len);
    vfu_client_free(c);
}
END_TEST

/* Posted writes take effect in order, before a later read's reply. */
START_TEST(test_posted_writes_ordered)
{
    struct vfu_client *r = tu_open(daemon_, "r0");
    struct vfu_client *t = tu_open(daemon_, "t1");
    for (uint32_t i = 1; i <= 500; i++) {
        ck_assert_int_eq(vfu_client_region_write_posted(r, RAM_REGS_BAR, RAM_REG_SCRATCH, &i, 4),
                         0);
        uint64_t interval = 1000ull * i;
        ck_assert_int_eq(
            vfu_client_region_write_posted(t, TIMER_REGS_BAR, TIMER_REG_INTERVAL, &interval, 8), 0);
    }
    ck_assert_uint_eq(tu_rd32(r, RAM_REGS_BAR, RAM_REG_SCRATCH), 500);
    ck_assert_uint_eq(tu_rd64(t, TIMER_REGS_BAR, TIMER_REG_INTERVAL), 500000);
    /* A posted write is answered by nothing: the next reply is the read's. */
    uint32_t v = 77;
    ck_assert_int_eq(vfu_client_region_write_posted(r, RAM_REGS_BAR, RAM_REG_SCRATCH, &v, 4), 0);
    ck_assert_uint_eq(tu_rd32(r, RAM_REGS_BAR, RAM_REG_SCRATCH), 77);
    vfu_client_free(r);
    vfu_client_free(t);
}
END_TEST

/* Several commands in flight: the replies come back in order, ids matching. */
START_TEST(test_pipelined)
{
    enum { ROUNDS = 40, PER_ROUND = 5 };
    struct vfu_client *c = tu_open(daemon_, "r0");
    uint16_t ids[ROUNDS * PER_ROUND];
    uint16_t cmds[ROUNDS * PER_ROUND];
    size_t n = 0;

    for (uint32_t i = 0; i < ROUNDS; i++) {
        struct vfu_device_info info = {.argsz = sizeof(info)};
        struct vfu_region_access rd = {
            .offset = RAM_REG_SCRATCH, .region = RAM_REGS_BAR, .count = 4};
        struct vfu_region_access bad = {.offset = 0, .region = 42, .count = 4};
        struct vfu_irq_info irq = {.argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX};
        struct vfu_region_access head = {
            .offset = RAM_REG_SCRATCH, .region = RAM_REGS_BAR, .count = 4};
        uint8_t wr[sizeof(head) + 4];
        memcpy(wr, &head, sizeof(head));
        memcpy(wr + sizeof(head), &i, 4);

        /* A posted write first: the read after it must see it. */
        ck_assert_int_eq(vfu_client_send_cmd(c, VFU_CMD_REGION_WRITE, VFU_FLAG_NO_REPLY, wr,
                                             sizeof(wr), NULL, 0, NULL),
                         0);
#define SEND(cmd, payload)                                                                         \
    do {                                                                                           \
        cmds[n] = (cmd);                                                                           \
        ck_assert_int_eq(                                                                          \
            vfu_client_send_cmd(c, (cmd), 0, &(payload), sizeof(payload), NULL, 0, &ids[n]), 0);   \
        n++;                                                                                       \
    } while (0)
        SEND(VFU_CMD_REGION_READ, rd);
        SEND(VFU_CMD_DEVICE_GET_INFO, info);
        SEND(VFU_CMD_REGION_READ, bad);
        SEND(VFU_CMD_DEVICE_GET_IRQ_INFO, irq);
        SEND(VFU_CMD_REGION_READ, rd);
#undef SEND
    }

    for (size_t k = 0; k < n; k++) {
        struct vfu_header *reply;
        ck_assert_int_eq(vfu_client_recv_reply(c, &reply, NULL, 0, NULL), 0);
        ck_assert_msg(reply->msg_id == ids[k], "reply %zu has id %u, expected %u", k, reply->msg_id,
                      ids[k]);
        ck_assert_uint_eq(reply->command, cmds[k]);
        uint32_t round = (uint32_t)(k / PER_ROUND);
        switch (k % PER_ROUND) {
        case 2:
            ck_assert(reply->flags & VFU_FLAG_ERROR);
            ck_assert_uint_eq(reply->error, EINVAL);
            break;
        case 0:
        case 4: {
            ck_assert(!(reply->flags & VFU_FLAG_ERROR));
            ck_assert_uint_eq(reply->msg_size,
                              sizeof(*reply) + sizeof(struct vfu_region_access) + 4);
            uint32_t v;
            memcpy(&v, (uint8_t *)(reply + 1) + sizeof(struct vfu_region_access), 4);
            ck_assert_uint_eq(v, round);
            break;
        }
        case 3: {
            ck_assert(!(reply->flags & VFU_FLAG_ERROR));
            struct vfu_irq_info irq;
            memcpy(&irq, reply + 1, sizeof(irq));
            ck_assert_uint_eq(irq.count, RAM_MSIX_VECTORS);
            break;
        }
        default:
            ck_assert(!(reply->flags & VFU_FLAG_ERROR));
        }
        free(reply);
    }
    vfu_client_free(c);
}
END_TEST

START_TEST(test_reset)
{
    struct vfu_client *t = tu_open(daemon_, "t0");
    tu_wr64(t, TIMER_REGS_BAR, TIMER_REG_INTERVAL, 123456789);
    tu_wr32(t, TIMER_REGS_BAR, TIMER_REG_VECTOR, 1);
    tu_wr64(t, TIMER_REGS_BAR, TIMER_REG_DEADLINE, UINT64_MAX / 2);
    tu_wr32(t, TIMER_REGS_BAR, TIMER_REG_CTRL, TIMER_CTRL_ENABLE | TIMER_CTRL_PERIODIC);
    tu_wr16(t, TU_CFG, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    usleep(20000);
    uint64_t now_before = tu_rd64(t, TIMER_REGS_BAR, TIMER_REG_NOW);
    ck_assert_uint_ge(now_before, 20000000);

    ck_assert_int_eq(vfu_client_reset(t), 0);
    ck_assert_uint_eq(tu_rd32(t, TIMER_REGS_BAR, TIMER_REG_CTRL), 0);
    ck_assert_uint_eq(tu_rd32(t, TIMER_REGS_BAR, TIMER_REG_STATUS), 0);
    ck_assert_uint_eq(tu_rd64(t, TIMER_REGS_BAR, TIMER_REG_INTERVAL), 0);
    ck_assert_uint_eq(tu_rd64(t, TIMER_REGS_BAR, TIMER_REG_DEADLINE), 0);
    ck_assert_uint_eq(tu_rd32(t, TIMER_REGS_BAR, TIMER_REG_VECTOR), 0);
    ck_assert_uint_eq(tu_rd32(t, TIMER_REGS_BAR, TIMER_REG_FIRE_COUNT), 0);
    ck_assert_uint_lt(tu_rd64(t, TIMER_REGS_BAR, TIMER_REG_NOW), now_before);
    ck_assert_uint_eq(tu_rd16(t, TU_CFG, PCI_COMMAND) & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER),
                      0);
    ck_assert_uint_eq(tu_rd32(t, TIMER_REGS_BAR, TIMER_REG_ID), TIMER_ID_MAGIC);
    vfu_client_free(t);

    struct vfu_client *r = tu_open(daemon_, "r0");
    uint8_t data[16] = "kept over reset";
    ck_assert_int_eq(vfu_client_region_write(r, RAM_MEM_BAR, 4096, data, sizeof(data)), 0);
    tu_wr32(r, RAM_REGS_BAR, RAM_REG_SCRATCH, 0x5a5a5a5a);
    tu_wr64(r, RAM_REGS_BAR, RAM_REG_DMA_ADDR, 0x1000);
    tu_wr32(r, RAM_REGS_BAR, RAM_REG_DOORBELL, 1);
    ck_assert_int_eq(vfu_client_reset(r), 0);
    ck_assert_uint_eq(tu_rd32(r, RAM_REGS_BAR, RAM_REG_SCRATCH), 0);
    ck_assert_uint_eq(tu_rd64(r, RAM_REGS_BAR, RAM_REG_DMA_ADDR), 0);
    ck_assert_uint_eq(tu_rd32(r, RAM_REGS_BAR, RAM_REG_DOORBELL_COUNT), 0);
    ck_assert_uint_eq(tu_rd64(r, RAM_REGS_BAR, RAM_REG_SIZE), RAM_SIZE);
    /* The RAM itself survives a (warm) reset, as documented in ram.c. */
    uint8_t back[16];
    ck_assert_int_eq(vfu_client_region_read(r, RAM_MEM_BAR, 4096, back, sizeof(back)), 0);
    ck_assert_mem_eq(back, data, sizeof(data));
    vfu_client_free(r);
}
END_TEST

START_TEST(test_dma_map_unmap)
{
    struct vfu_client *c = tu_open(daemon_, "r0");
    void *mem;
    int fd = tu_memfd(256 * 1024, &mem);
    ck_assert_int_ge(fd, 0);
    const uint32_t rw = VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE;
    const uint64_t base = 0x100000;

    ck_assert_int_eq(vfu_client_dma_map(c, base, 64 * 1024, rw, fd, 0), 0);
    ck_assert_int_eq(vfu_client_dma_map(c, base + 0x20000, 64 * 1024, rw, fd, 0x10000), 0);
    /* Overlaps: same range, inside, straddling either end. */
    ck_assert_int_eq(vfu_client_dma_map(c, base, 64 * 1024, rw, fd, 0), -EEXIST);
    ck_assert_int_eq(vfu_client_dma_map(c, base + 0x1000, 4096, rw, fd, 0), -EEXIST);
    ck_assert_int_eq(vfu_client_dma_map(c, base - 0x1000, 0x2000, rw, fd, 0), -EEXIST);
    ck_assert_int_eq(vfu_client_dma_map(c, base + 0xf000, 0x2000, rw, fd, 0), -EEXIST);
    ck_assert_int_eq(vfu_client_dma_map(c, base + 0x1f000, 0x2000, rw, fd, 0), -EEXIST);
    /* Nonsense maps. */
    ck_assert_int_eq(vfu_client_dma_map(c, 0x900000, 0, rw, fd, 0), -EINVAL);
    ck_assert_int_eq(vfu_client_dma_map(c, UINT64_MAX - 0xfff, 0x2000, rw, fd, 0), -EINVAL);

    /* Unmap may not cut a mapping; nothing mapped in the range is no error. */
    ck_assert_int_eq(vfu_client_dma_unmap(c, base, 32 * 1024, 0), -EINVAL);
    ck_assert_int_eq(vfu_client_dma_unmap(c, base + 0x1000, 64 * 1024, 0), -EINVAL);
    ck_assert_int_eq(vfu_client_dma_unmap(c, base, 64 * 1024, 0), 0);
    ck_assert_int_eq(vfu_client_dma_unmap(c, base, 64 * 1024, 0), 0);
    /* The range is free again. */
    ck_assert_int_eq(vfu_client_dma_map(c, base, 64 * 1024, rw, fd, 0), 0);
    /* One unmap over both maps and the gap between them takes both (QEMU
     * does this), and both ranges map again. */
    ck_assert_int_eq(vfu_client_dma_unmap(c, base, 0x30000, 0), 0);
    ck_assert_int_eq(vfu_client_dma_map(c, base, 64 * 1024, rw, fd, 0), 0);
    ck_assert_int_eq(vfu_client_dma_map(c, base + 0x20000, 64 * 1024, rw, fd, 0x10000), 0);

    /* An fd-less map, then FLAG_ALL drops both kinds. */
    static uint8_t local[8192];
    ck_assert_int_eq(vfu_client_dma_map_local(c, 0x800000, sizeof(local), rw, local), 0);
    ck_assert_int_eq(vfu_client_dma_unmap(c, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL), 0);
    ck_assert_int_eq(vfu_client_dma_map(c, base, 64 * 1024, rw, fd, 0), 0);
    ck_assert_int_eq(vfu_client_dma_map(c, base + 0x20000, 64 * 1024, rw, fd, 0x10000), 0);
    ck_assert_int_eq(vfu_client_dma_map_local(c, 0x800000, sizeof(local), rw, local), 0);

    close(fd);
    munmap(mem, 256 * 1024);
    vfu_client_free(c);
}
END_TEST

static Suite *protocol_suite(void)
{
    Suite *s = suite_create("protocol");
    TCase *tc = tcase_create("commands");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_version_qemu_json);
    tcase_add_test(tc, test_version_without_json);
    tcase_add_test(tc, test_version_bad_json);
    tcase_add_test(tc, test_command_before_version);
    tcase_add_test(tc, test_unknown_and_server_commands);
    tcase_add_test(tc, test_device_info);
    tcase_add_test(tc, test_region_info);
    tcase_add_test(tc, test_region_info_short);
    tcase_add_test(tc, test_region_info_client_takes_no_fds);
    tcase_add_test(tc, test_ram_mmap);
    tcase_add_test(tc, test_region_io_fds);
    tcase_add_test(tc, test_irq_info);
    tcase_add_test(tc, test_set_irqs);
    tcase_add_test(tc, test_config_ids);
    tcase_add_test(tc, test_config_bar_sizing);
    tcase_add_test(tc, test_write_multi);
    tcase_add_test(tc, test_posted_writes_ordered);
    tcase_add_test(tc, test_pipelined);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_dma_map_unmap);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(protocol_suite());
}

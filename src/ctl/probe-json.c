/* SPDX-License-Identifier: MIT */
/*
 * The machine view of a probe: one JSON object on stdout, numbers as JSON
 * numbers (not hex strings), flags both raw and named, so scripts need
 * neither to parse the text output nor to know VFIO's bit values.
 */
#include "ctl/probe.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "util/macro.h"

DEFINE_FREEP(json_object, json_object_put)

static void add(json_object *o, const char *key, json_object *v)
{
    json_object_object_add(o, key, v);
}
static void add_u64(json_object *o, const char *key, uint64_t v)
{
    add(o, key, json_object_new_uint64(v));
}
static void add_bool(json_object *o, const char *key, bool v)
{
    add(o, key, json_object_new_boolean(v));
}
static void add_str(json_object *o, const char *key, const char *v)
{
    add(o, key, json_object_new_string(v));
}
static void add_err(json_object *o, int err)
{
    add_str(o, "error", strerror(-err));
}

static json_object *names(uint32_t flags, const char *const *tab, size_t n)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        if (flags & (1u << i))
            json_object_array_add(a, json_object_new_string(tab[i]));
    return a;
}

static json_object *device_json(const struct probe *p)
{
    static const char *const flag_names[] = {"reset", "pci", "platform", "amba",
                                             "ccw",   "ap",  "fsl-mc",   "caps"};
    json_object *o = json_object_new_object();
    add_u64(o, "flags", p->dev.flags);
    add(o, "flag_names", names(p->dev.flags, flag_names, ELEMENTSOF(flag_names)));
    add_u64(o, "num_regions", p->dev.num_regions);
    add_u64(o, "num_irqs", p->dev.num_irqs);
    return o;
}

static json_object *cap_json(const struct probe *p, const struct probe_cap *cap)
{
    json_object *o = json_object_new_object();
    const char *name =
        cap->extended ? probe_ext_cap_name(cap->id) : probe_cap_name((uint8_t)cap->id);
    add_u64(o, "offset", cap->offset);
    add_u64(o, "id", cap->id);
    if (name)
        add_str(o, "name", name);
    if (cap->extended) {
        add_u64(o, "version", cap->version);
        return o;
    }
    if (cap->id == 0x01) {
        struct probe_pm pm;
        probe_decode_pm(p, cap->offset, &pm);
        add_u64(o, "version", pm.version);
        add_u64(o, "power_state", pm.state);
    } else if (cap->id == 0x05) {
        struct probe_msi m;
        probe_decode_msi(p, cap->offset, &m);
        add_bool(o, "enabled", m.enabled);
        add_u64(o, "vectors", m.vectors);
        add_u64(o, "enabled_vectors", m.enabled_vectors);
        add_bool(o, "64bit", m.is64);
        add_bool(o, "maskable", m.maskable);
    } else if (cap->id == 0x11) {
        struct probe_msix x;
        probe_decode_msix(p, cap->offset, &x);
        add_bool(o, "enabled", x.enabled);
        add_bool(o, "function_masked", x.masked);
        add_u64(o, "table_size", x.table_size);
        add_u64(o, "table_bir", x.table_bir);
        add_u64(o, "table_offset", x.table_offset);
        add_u64(o, "pba_bir", x.pba_bir);
        add_u64(o, "pba_offset", x.pba_offset);
    } else if (cap->id == 0x10) {
        struct probe_pcie e;
        probe_decode_pcie(p, cap->offset, &e);
        add_u64(o, "version", e.version);
        add_u64(o, "type", e.type);
        add_str(o, "type_name", probe_pcie_type_name(e.type));
        add_u64(o, "max_payload", e.max_payload);
        add_u64(o, "link_speed", e.link_speed);
        add_u64(o, "link_width", e.link_width);
    }
    return o;
}

static json_object *pci_json(const struct probe *p)
{
    json_object *o = json_object_new_object();

    if (p->config_err < 0) {
        add_err(o, p->config_err);
        return o;
    }
    uint32_t class = probe_cfg32(p, 0x08) >> 8;
    add_u64(o, "vendor_id", probe_cfg16(p, 0x00));
    add_u64(o, "device_id", probe_cfg16(p, 0x02));
    add_u64(o, "subsystem_vendor_id", probe_cfg16(p, 0x2c));
    add_u64(o, "subsystem_id", probe_cfg16(p, 0x2e));
    add_u64(o, "class_code", class);
    add_str(o, "class_name", probe_class_name((uint8_t)(class >> 16)));
    add_u64(o, "revision", p->config[0x08]);
    add_u64(o, "command", probe_cfg16(p, 0x04));
    add_u64(o, "status", probe_cfg16(p, 0x06));
    add_u64(o, "interrupt_pin", p->config[0x3d]);
    add_u64(o, "config_size", p->config_len);

    struct probe_bar bars[6];
    size_t n = probe_bars(p, bars);
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_new_object();
        add_u64(b, "index", bars[i].index);
        add_str(b, "type", bars[i].io ? "io" : "memory");
        add_bool(b, "64bit", bars[i].is64);
        add_bool(b, "prefetchable", bars[i].prefetchable);
        add_u64(b, "address", bars[i].address);
        add_u64(b, "size", bars[i].size);
        json_object_array_add(a, b);
    }
    add(o, "bars", a);

    struct probe_cap caps[PROBE_MAX_CAPS];
    n = probe_caps(p, caps, ELEMENTSOF(caps));
    a = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(a, cap_json(p, &caps[i]));
    add(o, "capabilities", a);
    return o;
}

static json_object *region_json(const struct probe *p, uint32_t i)
{
    static const char *const flag_names[] = {"read", "write", "mmap", "caps"};
    const struct probe_region *r = &p->regions[i];
    json_object *o = json_object_new_object();
    const char *name = probe_region_name(i);

    add_u64(o, "index", i);
    if (name)
        add_str(o, "name", name);
    if (r->err < 0) {
        add_err(o, r->err);
        return o;
    }
    add_u64(o, "size", r->info.size);
    add_u64(o, "offset", r->info.offset);
    add_u64(o, "flags", r->info.flags);
    add(o, "flag_names", names(r->info.flags, flag_names, ELEMENTSOF(flag_names)));
    add_bool(o, "fd", r->has_fd);
    json_object *a = json_object_new_array();
    for (uint32_t k = 0; k < r->nr_areas; k++) {
        json_object *area = json_object_new_object();
        add_u64(area, "offset", r->areas[k].offset);
        add_u64(area, "size", r->areas[k].size);
        json_object_array_add(a, area);
    }
    add(o, "sparse_mmap", a);
    json_object *io = json_object_new_object();
    if (r->io_fds_err < 0) {
        add_err(io, r->io_fds_err);
    } else {
        add_u64(io, "subregions", r->nr_io_subregions);
        add_u64(io, "fds", r->nr_io_fds);
    }
    add(o, "io_fds", io);
    return o;
}

static json_object *irq_json(const struct probe *p, uint32_t i)
{
    static const char *const flag_names[] = {"eventfd", "maskable", "automasked", "noresize"};
    const struct probe_irq *q = &p->irqs[i];
    json_object *o = json_object_new_object();
    const char *name = probe_irq_name(i);

    add_u64(o, "index", i);
    if (name)
        add_str(o, "name", name);
    if (q->err < 0) {
        add_err(o, q->err);
        return o;
    }
    add_u64(o, "count", q->info.count);
    add_u64(o, "flags", q->info.flags);
    add(o, "flag_names", names(q->info.flags, flag_names, ELEMENTSOF(flag_names)));
    return o;
}

int probe_print_json(const struct probe *p)
{
    _cleanup_(json_object_putp) json_object *root = json_object_new_object();
    if (!root)
        return -ENOMEM;

    add_str(root, "socket", p->socket);
    /* The server's own JSON, parsed, so scripts get an object, not a string. */
    json_object *caps = p->server_json ? json_tokener_parse(p->server_json) : NULL;
    add(root, "server_capabilities", caps ? caps : json_object_new_object());
    add(root, "device", device_json(p));
    add(root, "pci", pci_json(p));

    json_object *a = json_object_new_array();
    for (uint32_t i = 0; i < p->nr_regions; i++)
        json_object_array_add(a, region_json(p, i));
    add(root, "regions", a);
    a = json_object_new_array();
    for (uint32_t i = 0; i < p->nr_irqs; i++)
        json_object_array_add(a, irq_json(p, i));
    add(root, "irqs", a);

    puts(json_object_to_json_string_ext(root,
                                        JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    return fflush(stdout) == 0 ? 0 : -EIO;
}

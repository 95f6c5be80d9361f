/* SPDX-License-Identifier: MIT */
/*
 * Identify: the controller (CNS 1), a namespace (CNS 0), the active
 * namespace list (CNS 2) and the namespace identification descriptors
 * (CNS 3). Offsets are NVMe 1.4's Figures 247 and 249.
 */
#include <endian.h>
#include <stdio.h>
#include <string.h>

#include "nvme-dev.h"

static void put16(uint8_t *p, size_t off, uint16_t v)
{
    v = htole16(v);
    memcpy(p + off, &v, 2);
}

static void put32(uint8_t *p, size_t off, uint32_t v)
{
    v = htole32(v);
    memcpy(p + off, &v, 4);
}

static void put64(uint8_t *p, size_t off, uint64_t v)
{
    v = htole64(v);
    memcpy(p + off, &v, 8);
}

/* ASCII, padded with spaces, not terminated. */
static void put_str(uint8_t *p, size_t off, size_t width, const char *s)
{
    size_t n = strlen(s);
    memset(p + off, ' ', width);
    memcpy(p + off, s, n < width ? n : width);
}

/* A namespace GUID from the serial and the NSID: stable for a device,
 * distinct between devices whose serials differ and between namespaces
 * (FNV-1a, twice; namespace 1's is what it was when it was the only one). */
static void ns_guid(const struct nvme_dev *d, uint32_t nsid, uint8_t guid[16])
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *s = d->serial; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    for (uint32_t n = nsid; nsid > 1 && n; n >>= 8)
        h = (h ^ (n & 0xff)) * 0x100000001b3ull;
    uint64_t h2 = (h ^ 0x6e766d65) * 0x100000001b3ull;
    memcpy(guid, &h, 8);
    memcpy(guid + 8, &h2, 8);
}

static void identify_ctrl(const struct nvme_dev *d, uint8_t *p)
{
    put16(p, 0, NVME_PCI_VENDOR_ID);
    put16(p, 2, NVME_PCI_VENDOR_ID);
    put_str(p, 4, 20, d->serial);
    put_str(p, 24, 40, d->model);
    put_str(p, 64, 8, "1.0");
    p[72] = 0;         /* RAB */
    p[77] = NVME_MDTS; /* MDTS */
    put16(p, 78, 1);   /* CNTLID */
    put32(p, 80, NVME_VS_1_4);
    put32(p, 92, 1u << 8); /* OAES: namespace attribute notices (never sent) */
    p[111] = 1;            /* CNTRLTYPE: I/O controller */
    put16(p, NVME_ID_CTRL_OACS, NVME_ID_OACS_DBBUF); /* OACS: only Doorbell Buffer Config */
    p[258] = 3;                                      /* ACL */
    p[259] = NVME_AERL;                              /* AERL */
    p[260] = 0x03;                                   /* FRMW: one slot, read only */
    p[261] = 0;                                      /* LPA */
    p[262] = 0;                                      /* ELPE: one error log entry */
    p[263] = 0;                                      /* NPSS: one power state */
    put16(p, 266, 0x157);                            /* WCTEMP */
    put16(p, 268, 0x175);                            /* CCTEMP */
    p[512] = NVME_SQES << 4 | NVME_SQES;
    p[513] = NVME_CQES << 4 | NVME_CQES;
    put16(p, 514, 0);      /* MAXCMD: not reported */
    put32(p, 516, d->nn);  /* NN */
    put16(p, 520, 0x000d); /* ONCS: Compare, DSM, Write Zeroes */
    p[525] = 0x7;          /* VWC: present, Flush of NSID FFFFFFFFh supported */
    /* SGLS: SGLs on NVM commands, data blocks at any byte address and of any
     * length, bit buckets, and an SGL longer than the data (the rest unread).
     * No keyed or transport data blocks, no metadata SGLs (PSDT 10b). */
    put32(p, 536,
          NVME_SGLS_SUPPORTED_ANY_ALIGN | NVME_SGLS_BIT_BUCKET | NVME_SGLS_LONGER_THAN_DATA);
    char nqn[256];
    int n = snprintf(nqn, sizeof(nqn), "nqn.2024-01.io.muserd:nvme:%s", d->serial);
    memcpy(p + 768, nqn, n > 0 && (size_t)n < 256 ? (size_t)n : 255);
    put16(p, 2048, 2500); /* PSD0 MP: 25 W */
}

static void identify_ns(const struct nvme_dev *d, const struct nvme_ns *ns, uint8_t *p)
{
    put64(p, 0, ns->nr_blocks);          /* NSZE */
    put64(p, 8, ns->nr_blocks);          /* NCAP */
    put64(p, 16, ns->nr_blocks);         /* NUSE */
    p[25] = 0;                           /* NLBAF: one format */
    p[26] = 0;                           /* FLBAS */
    p[33] = 1;                           /* DLFEAT: deallocated blocks read as zeros */
    p[99] = ns->read_only ? 1 : 0;       /* NSATTR: write protected */
    ns_guid(d, ns->nsid, p + 104);       /* NGUID */
    p[128 + 2] = (uint8_t)ns->lba_shift; /* LBAF0: LBADS */
}

uint16_t nvme_identify(struct nvme_dev *d, const struct nvme_sqe *cmd, struct nvme_result *res)
{
    uint8_t data[NVME_ID_SIZE] = {0};
    uint32_t cns = le32toh(cmd->cdw10) & 0xff, nsid = le32toh(cmd->nsid);
    const struct nvme_ns *ns = nvme_ns_of(d, nsid);
    uint32_t n = 0;

    switch (cns) {
    case NVME_ID_CNS_CTRL:
        identify_ctrl(d, data);
        break;
    case NVME_ID_CNS_NS:
        /* FFFFFFFFh (the capabilities common to all namespaces) is for a
         * controller with Namespace Management, which this one is not. */
        if (nsid < 1 || nsid > d->nn)
            return NVME_SC_INVALID_NS;
        if (ns) /* an inactive NSID in range reads as zeros */
            identify_ns(d, ns, data);
        break;
    case NVME_ID_CNS_NS_ACTIVE_LIST:
        /* The active namespaces above nsid, in order. */
        if (nsid >= 0xfffffffeu)
            return NVME_SC_INVALID_NS;
        for (uint32_t i = 0; i < NVME_MAX_NS; i++)
            if (d->ns[i].active && d->ns[i].nsid > nsid)
                put32(data, 4 * n++, d->ns[i].nsid);
        break;
    case NVME_ID_CNS_NS_DESC_LIST:
        if (!ns)
            return NVME_SC_INVALID_NS;
        data[0] = 2;  /* NIDT: NGUID */
        data[1] = 16; /* NIDL */
        ns_guid(d, ns->nsid, data + 4);
        break;
    default:
        return NVME_SC_INVALID_FIELD;
    }
    return nvme_data_copy(d, cmd, data, sizeof(data), true);
}

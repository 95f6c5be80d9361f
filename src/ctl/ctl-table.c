/* SPDX-License-Identifier: MIT */
/*
 * Columns for people: every cell is kept until the widest of each column is
 * known, then printed left-aligned two spaces apart. Device lists are small
 * (thousands of rows at most), so holding them costs nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"

struct ctl_table {
    size_t ncols, nrows; /* nrows counts the header */
    char **cells;        /* nrows * ncols */
    size_t *width;
};

void ctl_table_free(struct ctl_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->width);
    free(t);
}

int ctl_table_new(size_t ncols, const char *const *header, struct ctl_table **ret)
{
    struct ctl_table *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    t->ncols = ncols;
    t->width = calloc(ncols, sizeof(*t->width));
    int r = t->width ? ctl_table_add(t, header) : -ENOMEM;
    if (r < 0) {
        ctl_table_free(t);
        return r;
    }
    *ret = t;
    return 0;
}

int ctl_table_add(struct ctl_table *t, const char *const *cells)
{
    size_t n;

    if (__builtin_mul_overflow(t->nrows + 1, t->ncols, &n))
        return -ENOMEM;
    char **grown = reallocarray(t->cells, n, sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    t->cells = grown;
    for (size_t c = 0; c < t->ncols; c++) {
        char *s = strdup(cells[c] ? cells[c] : "-");
        if (!s) {
            for (size_t k = 0; k < c; k++)
                free(t->cells[t->nrows * t->ncols + k]);
            return -ENOMEM;
        }
        t->cells[t->nrows * t->ncols + c] = s;
        size_t len = strlen(s);
        if (len > t->width[c])
            t->width[c] = len;
    }
    t->nrows++;
    return 0;
}

size_t ctl_table_rows(const struct ctl_table *t)
{
    return t->nrows - 1;
}

void ctl_table_print(const struct ctl_table *t)
{
    for (size_t row = 0; row < t->nrows; row++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[row * t->ncols + c];
            if (c + 1 < t->ncols)
                printf("%-*s  ", (int)t->width[c], s);
            else
                printf("%s\n", s);
        }
    }
}

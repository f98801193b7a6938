/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Size parsing shared by the command line, workloads and the monitor. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>

#include "hintmig/hintmig.h"

bool hintmig_size_parse(const char *str, uint64_t default_unit, uint64_t *out,
                GError **errp)
{
    char *end;
    uint64_t unit = default_unit;

    if (!str || !*str || *str == '-' || !g_ascii_isdigit(*str)) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "'%s' is not a size (expected e.g. 512M or 2G)",
                    str ? str : "");
        return false;
    }
    errno = 0;
    guint64 v = g_ascii_strtoull(str, &end, 10);
    if (errno) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "size '%s' is out of range", str);
        return false;
    }
    if (*end) {
        switch (g_ascii_toupper(*end)) {
        case 'B': unit = 1; break;
        case 'K': unit = 1ULL << 10; break;
        case 'M': unit = 1ULL << 20; break;
        case 'G': unit = 1ULL << 30; break;
        case 'T': unit = 1ULL << 40; break;
        default: unit = 0; break;
        }
        end++;
        if (unit > 1 && (!g_ascii_strcasecmp(end, "B") ||
                         !g_ascii_strcasecmp(end, "iB"))) {
            end += strlen(end);
        }
        if (!unit || *end) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "size '%s' has an unknown suffix (use K, M, G or T)",
                        str);
            return false;
        }
    }
    if (unit && v > UINT64_MAX / unit) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "size '%s' is out of range", str);
        return false;
    }
    *out = v * unit;
    return true;
}

char *hintmig_size_to_str(uint64_t bytes)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = bytes;
    unsigned i = 0;

    while (v >= 1024 && i + 1 < G_N_ELEMENTS(units)) {
        v /= 1024;
        i++;
    }
    return i ? g_strdup_printf("%.3g %s", v, units[i])
             : g_strdup_printf("%" G_GUINT64_FORMAT " B", bytes);
}

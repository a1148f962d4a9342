/* libFuzzer target for the dir:// entry parser (entry files are outside input: anyone who can
 * write the registry folder writes them). Checks, beyond "no crash": what parses formats back to
 * the same bytes, so parser and formatter agree on the one accepted form. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "naming/dir_entry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ft_dir_entry e;
    const char *why = NULL;
    if (ft_dir_entry_parse((const char *)data, size, &e, &why) != 0) {
        if (!why) abort(); /* every refusal names its reason */
        return 0;
    }
    char buf[FT_DIR_ENTRY_MAX + 1];
    int n = ft_dir_entry_format(&e, buf, sizeof buf);
    if (n < 0) abort();
    ft_dir_entry back;
    if (ft_dir_entry_parse(buf, (size_t)n, &back, NULL) != 0) abort();
    if (memcmp(&e.ep, &back.ep, sizeof e.ep) != 0 || e.pid != back.pid || e.ttl_ms != back.ttl_ms ||
        e.refreshed_ms != back.refreshed_ms || strcmp(e.service, back.service) != 0)
        abort();
    (void)ft_dir_entry_alive(&e, 0);
    (void)ft_dir_entry_reapable(&e, INT64_MAX / 4);
    return 0;
}

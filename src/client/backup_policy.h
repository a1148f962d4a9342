/* Built-in backup-request policies (ftrpc_backup_policy, client.h), with an injectable clock for
 * tests. The public constructors use the monotonic clock. */
#ifndef FT_CLIENT_BACKUP_POLICY_H
#define FT_CLIENT_BACKUP_POLICY_H

#include "base/clock.h"
#include "ftrpc/client.h"

/* What a policy's backup_delay_ms or backup_delay_us returns to mean "the client's (or call's)
 * delay" (backup_request_us or backup_request_ms). */
#define FT_BACKUP_DELAY_INHERIT (-2)

int ft_backup_policy_ratelimited_new(const ftrpc_backup_policy_ratelimited_options *opts,
                                     const ft_clock *clock, ftrpc_backup_policy **out);
int ft_backup_policy_adaptive_new(const ftrpc_backup_policy_adaptive_options *opts,
                                  const ft_clock *clock, ftrpc_backup_policy **out);
/* The rate-limited policy's view of its window: backups and calls counted (for tests and pages). */
void ft_backup_policy_ratelimited_counts(ftrpc_backup_policy *p, int64_t *backups, int64_t *calls);
/* The adaptive policy's current delay in ms, rounded up, and in us (-1 while it has too few
 * samples). */
int ft_backup_policy_adaptive_delay_ms(ftrpc_backup_policy *p);
int64_t ft_backup_policy_adaptive_delay_us(ftrpc_backup_policy *p);

#endif

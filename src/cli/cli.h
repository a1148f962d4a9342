/* The ftrpc command-line tool: one file per command, thin over the public API. */
#ifndef FT_CLI_H
#define FT_CLI_H

int ft_cli_echo_server(int argc, char **argv);
int ft_cli_call(int argc, char **argv);

/* Parses a number option; prints an error naming the option and returns -1 when it is not one. */
int ft_cli_parse_int(const char *opt, const char *text, long min, long max, long *out);
int ft_cli_parse_rate(const char *opt, const char *text, double *out);
/* Splits "package.Service/Method"; returns 0 or -1 with a message. */
int ft_cli_split_method(const char *full, char *service, size_t slen, char *method, size_t mlen);

#endif

/* Latency CDF plots as self-contained SVG (no scripts, fonts or external assets), for
 * `ftrpc bench --cdf` and the demo's HTML report.
 *
 * x is the latency in ms on a log scale spanning whole decades around the data, because tails
 * matter and span orders of magnitude; y is the cumulative fraction, linear from 0 to 1. Each
 * series is one step polyline built from ftrpc_histogram_cdf's points (exact fractions at bucket
 * edges, so the plot shows the recorded distribution, not a smoothed one).
 */
#include <math.h>
#include <stdlib.h>

#include "load.h"

#define CDF_MAX_POINTS 512

static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                     "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

void ft_cdf_svg(FILE *f, const char *title, const ft_cdf_series *series, size_t n, int width,
                int height)
{
    const double left = 60, right = 20, top = 30, bottom = 45;
    double pw = width - left - right, ph = height - top - bottom;
    /* The decades that hold every series' smallest and largest sample (1 us floor). */
    double lo = INFINITY, hi = 0;
    for (size_t i = 0; i < n; i++) {
        if (ftrpc_histogram_count(series[i].hist) == 0) continue;
        double a = (double)ftrpc_histogram_percentile(series[i].hist, 0) / 1000.0;
        double b = (double)ftrpc_histogram_max(series[i].hist) / 1000.0;
        if (a < lo) lo = a;
        if (b > hi) hi = b;
    }
    if (!(lo < INFINITY)) lo = 0.1, hi = 1;
    if (lo < 0.001) lo = 0.001;
    if (hi < lo) hi = lo;
    int d0 = (int)floor(log10(lo)), d1 = (int)ceil(log10(hi));
    if (d1 <= d0) d1 = d0 + 1;
    double span = d1 - d0;

    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n",
            width, height, width, height);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width,
            height);
    fprintf(f, "<text x=\"%g\" y=\"18\" font-size=\"13\" font-weight=\"bold\">", left);
    xml_text(f, title);
    fputs("</text>\n", f);
    /* y grid and labels */
    for (int i = 0; i <= 4; i++) {
        double y = top + ph - ph * i / 4.0;
        fprintf(f,
                "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n",
                left, y, left + pw, y, left - 6, y + 4, i / 4.0);
    }
    /* the p99 line: tails are what the plots are for, and on a linear y they hug the top */
    fprintf(f,
            "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#999\" "
            "stroke-dasharray=\"4 3\"/><text x=\"%g\" y=\"%.1f\" fill=\"#666\" "
            "text-anchor=\"end\">p99</text>\n",
            left, top + ph * 0.01, left + pw, top + ph * 0.01, left + pw - 2, top + ph * 0.01 + 11);
    /* x grid: decades, labelled */
    for (int d = d0; d <= d1; d++) {
        double x = left + pw * (d - d0) / span;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%g</text>\n",
                x, top, x, top + ph, x, top + ph + 15, pow(10, d));
    }
    fprintf(f,
            "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>"
            "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n",
            left, top + ph, left + pw, top + ph, left, top, left, top + ph);
    fprintf(f, "<text x=\"%g\" y=\"%d\" text-anchor=\"middle\">latency (ms, log scale)</text>\n",
            left + pw / 2, height - 8);
    fprintf(f,
            "<text x=\"14\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 14 %g)\">"
            "cumulative fraction</text>\n",
            top + ph / 2, top + ph / 2);

    ftrpc_cdf_point *pts = malloc(CDF_MAX_POINTS * sizeof *pts);
    for (size_t i = 0; pts && i < n; i++) {
        size_t np = 0;
        if (ftrpc_histogram_cdf(series[i].hist, pts, CDF_MAX_POINTS, &np) != 0 || np == 0) continue;
        const char *color = colors[i % (sizeof colors / sizeof colors[0])];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color);
        double prev_y = top + ph;
        for (size_t k = 0; k < np; k++) {
            double ms = (double)pts[k].value / 1000.0;
            if (ms < pow(10, d0)) ms = pow(10, d0);
            double x = left + pw * (log10(ms) - d0) / span;
            double y = top + ph - ph * pts[k].fraction;
            /* a step: rise at the value, from the previous fraction */
            fprintf(f, "%s%.1f,%.1f %.1f,%.1f", k ? " " : "", x, prev_y, x, y);
            prev_y = y;
        }
        fputs("\"/>\n", f);
        double ly = top + 14 + 14 * (double)i;
        fprintf(f,
                "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"3\"/><text x=\"%g\" y=\"%.1f\">",
                left + 10, ly - 4, left + 30, ly - 4, color, left + 36, ly);
        xml_text(f, series[i].label);
        fputs("</text>\n", f);
    }
    free(pts);
    fputs("</svg>\n", f);
}

/* ringbuf: see ringbuf.h */
#include <stdlib.h>
#include <string.h>
#include "ringbuf.h"

static uint64_t ringbuf_pow2(uint64_t n)
{
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

int ringbuf_init(t_ringbuf *r, int nchans, uint64_t size)
{
    size = ringbuf_pow2(size < 1 ? 1 : size);
    if (nchans < 1)
        nchans = 1;
    r->data = (float *)calloc((size_t)nchans * size, sizeof(float));
    if (!r->data)
    {
        r->nchans = 0;
        r->size = r->mask = 0;
        return -1;
    }
    r->nchans = nchans;
    r->size = size;
    r->mask = size - 1;
    return 0;
}

void ringbuf_free(t_ringbuf *r)
{
    free(r->data);
    r->data = 0;
    r->nchans = 0;
    r->size = r->mask = 0;
}

void ringbuf_clear(t_ringbuf *r)
{
    if (r->data)
        memset(r->data, 0, (size_t)r->nchans * r->size * sizeof(float));
}

void ringbuf_write(t_ringbuf *r, int chan, uint64_t pos, const float *src, int n)
{
    float *base;
    uint64_t off, first;
    if (!r->data || chan < 0 || chan >= r->nchans || n <= 0)
        return;
    base = r->data + (size_t)chan * r->size;
    while ((uint64_t)n > r->size)   /* only the last size frames survive */
    {
        src += r->size;
        pos += r->size;
        n -= (int)r->size;
    }
    off = pos & r->mask;
    first = r->size - off;
    if (first >= (uint64_t)n)
        memcpy(base + off, src, n * sizeof(float));
    else
    {
        memcpy(base + off, src, first * sizeof(float));
        memcpy(base, src + first, (n - first) * sizeof(float));
    }
}

void ringbuf_fill(t_ringbuf *r, int chan, uint64_t pos, float value, int n)
{
    float *base;
    int i;
    if (!r->data || chan < 0 || chan >= r->nchans || n <= 0)
        return;
    base = r->data + (size_t)chan * r->size;
    if ((uint64_t)n > r->size)
        n = (int)r->size;
    for (i = 0; i < n; i++)
        base[(pos + i) & r->mask] = value;
}

void ringbuf_read(const t_ringbuf *r, int chan, uint64_t pos, float *dst, int n)
{
    const float *base;
    uint64_t off, first;
    if (n <= 0)
        return;
    if (!r->data || chan < 0 || chan >= r->nchans || (uint64_t)n > r->size)
    {
        memset(dst, 0, n * sizeof(float));
        return;
    }
    base = r->data + (size_t)chan * r->size;
    off = pos & r->mask;
    first = r->size - off;
    if (first >= (uint64_t)n)
        memcpy(dst, base + off, n * sizeof(float));
    else
    {
        memcpy(dst, base + off, first * sizeof(float));
        memcpy(dst + first, base, (n - first) * sizeof(float));
    }
}

float ringbuf_get(const t_ringbuf *r, int chan, uint64_t pos)
{
    if (!r->data || chan < 0 || chan >= r->nchans)
        return 0;
    return r->data[(size_t)chan * r->size + (pos & r->mask)];
}

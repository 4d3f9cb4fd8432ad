/* ringbuf: a multichannel float ring addressed by absolute frame positions.
   One writer and one reader; the owner keeps the positions (see worker.h). */
#ifndef UNRAVEL_RINGBUF_H
#define UNRAVEL_RINGBUF_H

#include <stdint.h>

typedef struct ringbuf {
    float *data;        /* nchans * size floats, channel after channel */
    int nchans;
    uint64_t size;      /* frames, a power of two */
    uint64_t mask;
} t_ringbuf;

/* allocate nchans * size zeroed floats; size is rounded up to a power of two.
   Returns 0 on success, -1 when out of memory (the ring is then empty). */
int ringbuf_init(t_ringbuf *r, int nchans, uint64_t size);
void ringbuf_free(t_ringbuf *r);
void ringbuf_clear(t_ringbuf *r);

/* copy n frames of channel chan from/to absolute frame position pos (wraps) */
void ringbuf_write(t_ringbuf *r, int chan, uint64_t pos, const float *src, int n);
void ringbuf_fill(t_ringbuf *r, int chan, uint64_t pos, float value, int n);
void ringbuf_read(const t_ringbuf *r, int chan, uint64_t pos, float *dst, int n);
float ringbuf_get(const t_ringbuf *r, int chan, uint64_t pos);

#endif

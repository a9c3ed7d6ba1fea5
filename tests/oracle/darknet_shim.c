/*
 * darknet_shim.c: a thin, ctypes-friendly wrapper around pjreddie's
 * libdarknet.so (Debian's CPU build), used as a test oracle by darknet_py.
 *
 * Build:  cc -O2 -shared -fPIC -I/usr/lib/darknet/include darknet_shim.c \
 *            -L/usr/lib/darknet -Wl,-rpath,/usr/lib/darknet -ldarknet -o shim.so
 *
 * Every function takes the opaque handle returned by shim_load (a network*).
 * Darknet aborts or calls exit() on many errors (missing file, bad cfg), so
 * the caller must only pass files that exist and cfgs Darknet accepts.
 */
#include <stdlib.h>
#include <string.h>
#include "darknet.h"

/* ---- loading ------------------------------------------------------------ */

/* srand(seed); parse cfg; load weights (if given); shrink the batch (if
 * batch > 0).  Darknet's set_batch_network does not reallocate buffers, so
 * a batch larger than the cfg's batch/subdivisions is refused (NULL). */
/* pj make_rnn_layer allocates one step of state (batch*outputs floats), but a training
 * forward moves l.state one step along per time step and writes steps+1 of them (the heap
 * overflow crashes the process later): give it AlexeyAB's steps+1 (AB make_rnn_layer).
 * pj make_lstm_layer allocates no delta, which a training forward zeroes: give it one (its
 * backward is not set either, so an [lstm] is only run forward here).  pj make_crnn_layer
 * leaves its workspace_size 0, so parse_network_cfg sizes the shared im2col workspace without
 * its convolutions (a heap overflow): grow it to their need (AB make_crnn_layer counts it).
 * Its convolutions keep learning_rate_scale 0 (pj make_convolutional_layer never sets it;
 * parse_network_cfg does for the top-level layers only), so pj never trains them: give them
 * the [crnn]'s own, as AlexeyAB's make_convolutional_layer does (1). */
static void fix_recurrent_buffers(network *net)
{
    int i;
    size_t have = 0, need = 0;
    for (i = 0; i < net->n; ++i) {
        layer *l = &net->layers[i];
        if (l->workspace_size > have) have = l->workspace_size;
        if (l->type == CRNN) {
            layer *parts[] = {l->input_layer, l->self_layer, l->output_layer};
            for (int k = 0; k < 3; ++k) {
                if (parts[k]->workspace_size > need) need = parts[k]->workspace_size;
                parts[k]->learning_rate_scale = l->learning_rate_scale;
            }
        }
    }
    if (need > have) {
        free(net->workspace);
        net->workspace = calloc(1, need);
    }
    for (i = 0; i < net->n; ++i) {
        layer *l = &net->layers[i];
        if (l->type == RNN) {
            free(l->state);
            l->state = calloc((size_t)l->batch * l->outputs * (l->steps + 1), sizeof(float));
        }
        if (l->type == LSTM && !l->delta)
            l->delta = calloc((size_t)l->batch * l->outputs * l->steps, sizeof(float));
    }
}

void *shim_load(const char *cfg, const char *weights, int batch, unsigned seed)
{
    srand(seed);
    network *net = parse_network_cfg((char *)cfg);
    if (!net) return NULL;
    fix_recurrent_buffers(net);
    if (weights && weights[0]) load_weights(net, (char *)weights);
    if (batch > 0) {
        if (batch > net->batch) { free_network(net); return NULL; }
        set_batch_network(net, batch);
    }
    return net;
}

void shim_free(void *h) { free_network((network *)h); }
void shim_save(void *h, const char *path) { save_weights((network *)h, (char *)path); }

/* ---- network / layer geometry --------------------------------------------- */

int shim_n_layers(void *h) { return ((network *)h)->n; }
int shim_batch(void *h) { return ((network *)h)->batch; }
int shim_subdivisions(void *h) { return ((network *)h)->subdivisions; }
int shim_inputs(void *h) { return ((network *)h)->inputs; }
int shim_truths(void *h) { return ((network *)h)->truths; }
int shim_net_h(void *h) { return ((network *)h)->h; }
int shim_net_w(void *h) { return ((network *)h)->w; }
int shim_net_c(void *h) { return ((network *)h)->c; }
float shim_cost(void *h) { network *n = h; return n->cost ? *n->cost : 0.f; }
size_t shim_get_seen(void *h) { return *((network *)h)->seen; }
void shim_set_seen(void *h, size_t seen) { *((network *)h)->seen = seen; }
float shim_current_rate(void *h) { return get_current_rate((network *)h); }

static layer *L(void *h, int i) { return &((network *)h)->layers[i]; }
int shim_layer_type(void *h, int i) { return L(h, i)->type; }
int shim_layer_outputs(void *h, int i) { return L(h, i)->outputs; }
int shim_layer_inputs(void *h, int i) { return L(h, i)->inputs; }
int shim_layer_out_w(void *h, int i) { return L(h, i)->out_w; }
int shim_layer_out_h(void *h, int i) { return L(h, i)->out_h; }
int shim_layer_out_c(void *h, int i) { return L(h, i)->out_c; }
int shim_layer_batch_normalize(void *h, int i) { return L(h, i)->batch_normalize; }

/* ---- per-layer float arrays ------------------------------------------------- */

/* Resolve a named float array of layer i; *len receives its length.
 * Returns NULL for unknown names and arrays this layer doesn't have. */
static float *layer_array(void *h, int i, const char *name, int *len)
{
    network *net = h;
    layer *l = L(h, i);
    int conv = l->type == CONVOLUTIONAL, fc = l->type == CONNECTED;
    int nb = conv ? l->n : fc ? l->outputs : 0;          /* per-channel params */
    int nw = conv ? l->nweights : fc ? l->inputs * l->outputs : 0;
    int bn = (conv || fc) && l->batch_normalize;
    int act = net->batch * l->outputs;
    struct { const char *name; float *p; int n; } t[] = {
        {"output", l->output, act},
        {"delta", l->delta, act},
        {"x", bn ? l->x : NULL, act},
        {"x_norm", bn ? l->x_norm : NULL, act},
        {"biases", l->biases, nb},
        {"bias_updates", l->bias_updates, nb},
        {"weights", l->weights, nw},
        {"weight_updates", l->weight_updates, nw},
        {"scales", bn ? l->scales : NULL, nb},
        {"scale_updates", bn ? l->scale_updates : NULL, nb},
        {"rolling_mean", bn ? l->rolling_mean : NULL, nb},
        {"rolling_variance", bn ? l->rolling_variance : NULL, nb},
        {"mean", bn ? l->mean : NULL, nb},
        {"variance", bn ? l->variance : NULL, nb},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; ++k) {
        if (strcmp(name, t[k].name) == 0) {
            if (!t[k].p || t[k].n <= 0) return NULL;
            *len = t[k].n;
            return t[k].p;
        }
    }
    return NULL;
}

/* Length of the array (-1 if absent); copies it into dst when dst != NULL. */
int shim_layer_get(void *h, int i, const char *name, float *dst)
{
    int n = 0;
    float *p = layer_array(h, i, name, &n);
    if (!p) return -1;
    if (dst) memcpy(dst, p, (size_t)n * sizeof(float));
    return n;
}

/* Overwrite the array from src (n floats, must equal its length). 0 on success. */
int shim_layer_set(void *h, int i, const char *name, const float *src, int n)
{
    int len = 0;
    float *p = layer_array(h, i, name, &len);
    if (!p || len != n) return -1;
    memcpy(p, src, (size_t)n * sizeof(float));
    return 0;
}

/* Copies batch*outputs floats of layer i's output. */
void shim_layer_output(void *h, int i, float *dst)
{
    network *net = h;
    memcpy(dst, L(h, i)->output, (size_t)net->batch * L(h, i)->outputs * sizeof(float));
}

/* ---- deterministic BN / bias randomisation ---------------------------------- */

static unsigned lcg_state;
static float lcg_uniform(float a, float b)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;          /* Numerical Recipes */
    return a + (b - a) * ((lcg_state >> 8) * (1.0f / 16777216.0f));
}

/* Conv/connected layers: with BN, scales ~ U(.5,1.5), biases ~ U(-.5,.5),
 * rolling_mean ~ U(-.5,.5), rolling_variance ~ U(.5,1.5) (drawn in that order
 * per layer); without BN, biases ~ U(-.1,.1).  Uses its own LCG, not rand(). */
static void randomize_layer_bn(layer *l)
{
    int nb = l->type == CONVOLUTIONAL ? l->n : l->outputs;
    if (l->batch_normalize) {
        for (int k = 0; k < nb; ++k) l->scales[k] = lcg_uniform(0.5f, 1.5f);
        for (int k = 0; k < nb; ++k) l->biases[k] = lcg_uniform(-0.5f, 0.5f);
        for (int k = 0; k < nb; ++k) l->rolling_mean[k] = lcg_uniform(-0.5f, 0.5f);
        for (int k = 0; k < nb; ++k) l->rolling_variance[k] = lcg_uniform(0.5f, 1.5f);
    } else {
        for (int k = 0; k < nb; ++k) l->biases[k] = lcg_uniform(-0.1f, 0.1f);
    }
}

/* Conv and connected layers, and the parts of an [rnn], [crnn], [gru] or
 * [lstm] (in their
 * weights order). */
void shim_randomize_bn(void *h, unsigned seed)
{
    network *net = h;
    lcg_state = seed;
    for (int i = 0; i < net->n; ++i) {
        layer *l = &net->layers[i];
        if (l->type == RNN || l->type == CRNN) {
            randomize_layer_bn(l->input_layer);
            randomize_layer_bn(l->self_layer);
            randomize_layer_bn(l->output_layer);
        }
        if (l->type == GRU) {
            layer *parts[] = {l->wz, l->wr, l->wh, l->uz, l->ur, l->uh};
            for (int k = 0; k < 6; ++k) randomize_layer_bn(parts[k]);
        }
        if (l->type == LSTM) {
            layer *parts[] = {l->wi, l->wf, l->wo, l->wg, l->ui, l->uf, l->uo, l->ug};
            for (int k = 0; k < 8; ++k) randomize_layer_bn(parts[k]);
        }
        if (l->type != CONVOLUTIONAL && l->type != CONNECTED) continue;
        randomize_layer_bn(l);
    }
}

/* ---- running the network ---------------------------------------------------- */

/* Like network_predict, but with a selectable train flag: copies batch*inputs
 * floats into net->input, runs forward_network with truth = delta = NULL, then
 * restores the struct (so net->truth stays usable for shim_train_step).
 * With train != 0, BN uses batch statistics and updates its rolling stats. */
void shim_forward(void *h, const float *input, int train)
{
    network *net = h;
    memcpy(net->input, input, (size_t)net->batch * net->inputs * sizeof(float));
    network orig = *net;
    net->truth = 0;
    net->delta = 0;
    net->train = train;
    forward_network(net);
    *net = orig;
}

/* One train_network_datum step: seen += batch; train = 1; forward; backward;
 * update_network when (seen/batch) % subdivisions == 0.  Returns *net->cost
 * (the mean over cost-owning layers of their mini-batch sums).
 * truth must hold batch*truths floats. */
float shim_train_step(void *h, const float *input, const float *truth)
{
    network *net = h;
    memcpy(net->input, input, (size_t)net->batch * net->inputs * sizeof(float));
    memcpy(net->truth, truth, (size_t)net->batch * net->truths * sizeof(float));
    return train_network_datum(net);
}

/* ---- detection post-processing (pj examples/detector.c test_detector) ------- */

int shim_layer_classes(void *h, int i) { return L(h, i)->classes; }
int shim_layer_n(void *h, int i) { return L(h, i)->n; }

/* Upper bound of get_network_boxes' count: w*h*n of every yolo/region/detection layer. */
int shim_max_boxes(void *h)
{
    network *net = h;
    int s = 0;
    for (int i = 0; i < net->n; ++i) {
        layer *l = &net->layers[i];
        if (l->type == YOLO || l->type == REGION || l->type == DETECTION) s += l->w * l->h * l->n;
    }
    return s;
}

/* load_image_color(path, 0, 0) (OpenCV imread in Debian's build, BGR->RGB, /255.).
 * whc receives w, h, c; the planar CHW floats are copied into dst when it holds
 * cap floats or more.  Returns w*h*c.  A missing file makes Darknet return a
 * 10x10 black image (OpenCV build), so check existence first. */
int shim_load_image_color(const char *path, float *dst, int cap, int *whc)
{
    image im = load_image_color((char *)path, 0, 0);
    int n = im.w * im.h * im.c;
    whc[0] = im.w; whc[1] = im.h; whc[2] = im.c;
    if (dst && n <= cap) memcpy(dst, im.data, (size_t)n * sizeof(float));
    free_image(im);
    return n;
}

/* resize_image / letterbox_image of a planar CHW float image src (w x h x c);
 * dst receives nw*nh*c floats. */
void shim_resize_image(const float *src, int w, int h, int c, int nw, int nh, float *dst)
{
    image im = {w, h, c, (float *)src};
    image out = resize_image(im, nw, nh);
    memcpy(dst, out.data, (size_t)nw * nh * c * sizeof(float));
    free_image(out);
}

/* pj image.c's rotate_crop_image (exported by libdarknet, not declared in darknet.h): the
 * classifier's crop/scale/rotation/aspect augmentation, bilinear, 0 outside the image. */
image rotate_crop_image(image im, float rad, float s, int w, int h, float dx, float dy,
                        float aspect);

void shim_rotate_crop_image(const float *src, int w, int h, int c, float rad, float s,
                            int nw, int nh, float dx, float dy, float aspect, float *dst)
{
    image im = {w, h, c, (float *)src};
    image out = rotate_crop_image(im, rad, s, nw, nh, dx, dy, aspect);
    memcpy(dst, out.data, (size_t)nw * nh * c * sizeof(float));
    free_image(out);
}

void shim_letterbox_image(const float *src, int w, int h, int c, int nw, int nh, float *dst)
{
    image im = {w, h, c, (float *)src};
    image out = letterbox_image(im, nw, nh);
    memcpy(dst, out.data, (size_t)nw * nh * c * sizeof(float));
    free_image(out);
}

/* min(nboxes, cap) detections into out as records of 5 + classes floats: x, y, w, h,
 * objectness, prob[0..classes-1]; then frees them. */
static void pack_detections(detection *dets, int nboxes, int classes, float *out, int cap)
{
    int stride = 5 + classes;
    for (int i = 0; i < nboxes && i < cap; ++i) {
        float *o = out + (size_t)i * stride;
        o[0] = dets[i].bbox.x; o[1] = dets[i].bbox.y;
        o[2] = dets[i].bbox.w; o[3] = dets[i].bbox.h;
        o[4] = dets[i].objectness;
        memcpy(o + 5, dets[i].prob, (size_t)classes * sizeof(float));
    }
    free_detections(dets, nboxes);
}

/* test_detector on an image already in memory (planar CHW, w x h x c):
 * letterbox_image(im, net->w, net->h); network_predict; get_network_boxes(net,
 * w, h, thresh, hier, 0, relative, &nboxes); do_nms_sort(dets, nboxes,
 * classes of the last layer, nms) when nms > 0.
 * sized (may be NULL) receives the letterboxed input (net->w*net->h*c floats).
 * out receives min(nboxes, cap) records of 5 + classes floats each, in the
 * final array order: x, y, w, h, objectness, prob[0..classes-1].
 * Returns nboxes (all detections, also those NMS zeroed). */
int shim_detect_image(void *h, const float *img, int w, int hh, int c, float thresh,
                      float hier, float nms, int relative, float *sized, float *out, int cap)
{
    network *net = h;
    image im = {w, hh, c, (float *)img};
    image s = letterbox_image(im, net->w, net->h);
    if (sized) memcpy(sized, s.data, (size_t)s.w * s.h * s.c * sizeof(float));
    network_predict(net, s.data);
    int nboxes = 0;
    detection *dets = get_network_boxes(net, w, hh, thresh, hier, 0, relative, &nboxes);
    int classes = net->layers[net->n - 1].classes;
    if (nms > 0) do_nms_sort(dets, nboxes, classes, nms);
    pack_detections(dets, nboxes, classes, out, cap);
    free_image(s);
    return nboxes;
}

/* The whole test_detector pipeline from a file: load_image_color(path, 0, 0)
 * then shim_detect_image.  whc receives the image's w, h, c. */
int shim_detect_file(void *h, const char *path, float thresh, float hier, float nms,
                     int relative, float *sized, float *out, int cap, int *whc)
{
    image im = load_image_color((char *)path, 0, 0);
    whc[0] = im.w; whc[1] = im.h; whc[2] = im.c;
    int n = shim_detect_image(h, im.data, im.w, im.h, im.c, thresh, hier, nms, relative,
                              sized, out, cap);
    free_image(im);
    return n;
}

/* ---- [region] tree= (YOLO9000) in pj's GPU order, on the CPU ---------------------------- */

/* pj blas.c (exported by libdarknet, not declared in darknet.h) */
void softmax_cpu(float *input, int n, int batch, int batch_offset, int groups, int group_offset,
                 int stride, float temp, float *output);

/* pj's CPU forward_region_layer runs its tree softmax over the wrong entries (offsets counted
 * in floats, not planes) and with the layer's temperature, which parse_region leaves at 0
 * (NaN); pj's GPU forward (forward_region_layer_gpu) runs softmax_tree (blas_kernels.cu) over
 * each group of every cell's class planes and then the CPU loss on that output.  This does the
 * same with pj's softmax_cpu: the group softmax (softmax_tree's layout: batch*n blocks of
 * inputs/n, w*h cells, stride w*h) written into a copy of layer i's input, then the layer's
 * forward with the tree's group count at 0 for the call, so that its CPU softmax loop runs no
 * group (the logistic on x, y and obj and the whole loss are pj's CPU code), restored after.
 * truth: batch*truths floats or NULL (train = 0). */
static void region_tree_forward(network *net, int i, const float *input, const float *truth,
                                int train)
{
    layer *l = &net->layers[i];
    tree *t = l->softmax_tree;
    int spatial = l->w * l->h, g;
    size_t total = (size_t)l->batch * l->inputs;
    float *buf = malloc(total * sizeof(float));
    memcpy(buf, input, total * sizeof(float));
    float *in = (float *)input + (size_t)(l->coords + 1) * spatial;
    float *out = buf + (size_t)(l->coords + 1) * spatial;
    for (g = 0; g < t->groups; ++g) {
        size_t off = (size_t)t->group_offset[g] * spatial;
        softmax_cpu(in + off, t->group_size[g], l->batch * l->n, l->inputs / l->n, spatial, 1,
                    spatial, 1, out + off);
    }
    network orig = *net;
    if (truth) memcpy(net->truth, truth, (size_t)net->batch * net->truths * sizeof(float));
    net->input = buf;
    net->train = train;
    net->index = i;
    if (!train) net->truth = 0;
    int groups = t->groups;
    t->groups = 0;
    l->forward(*l, *net);
    t->groups = groups;
    *net = orig;
    free(buf);
}

/* region_tree_forward of layer i; returns the layer's cost (0 without training). */
float shim_region_tree_forward(void *h, int i, const float *input, const float *truth)
{
    network *net = h;
    region_tree_forward(net, i, input, truth, truth != 0);
    return truth && L(h, i)->cost ? *L(h, i)->cost : 0.f;
}

/* region_tree_forward of the last layer (a tree [region]) on its input, then
 * get_network_boxes(net, w, hh, thresh, hier, map, relative): map NULL or, as pj's
 * get_region_detections reads it, 200 class numbers (the classes must be 200 or more).
 * out as shim_detect_image's (no NMS).  Returns nboxes. */
int shim_region_tree_detect(void *h, const float *input, int w, int hh, float thresh,
                            float hier, const int *map, int relative, float *out, int cap)
{
    network *net = h;
    region_tree_forward(net, net->n - 1, input, 0, 0);
    int nboxes = 0;
    detection *dets = get_network_boxes(net, w, hh, thresh, hier, (int *)map, relative, &nboxes);
    int classes = net->layers[net->n - 1].classes;
    pack_detections(dets, nboxes, classes, out, cap);
    return nboxes;
}

/* bench_replay.c -- the replay engine's speed on micrograd's demo, in C.
 *
 * Build and run from the repository root (the flags of setup.py):
 *   cc -O3 -ffp-contract=off -Isrc -Itests/c benchmarks/c/bench_replay.c src/tape*.c src/replay*.c -lm -pthread -o /tmp/bench_replay && /tmp/bench_replay
 *
 * 1. The per-sample loss of micrograd's demo, MLP(2, [16, 16, 1]) with
 *    ReLU hidden layers, loss = relu(1 - y * score), recorded once with the
 *    337 parameters shared and (x0, x1, y) per row, replayed over 1,000
 *    and 100,000 rows with the summed gradient, 1 and 2 threads.
 *    The 1,000-row calls run 100 at a time, back to back, as a training loop
 *    makes them; one more case times a single call after an idle pause
 *    (the pool's worker has gone to sleep and must be woken).
 * 2. micrograd's full-batch demo loss (100 samples as constants, hinge
 *    loss, L2 term), recorded as the core records it (one dot node per
 *    neuron), one scalar replay: value and gradient.
 * Figures are ns per scalar node (micrograd's count: each multiply and add
 * of a neuron is one node) per row; rounds interleave the cases; best and
 * median over the rounds.  On a shared machine, give the run its fair
 * share of the CPUs (Linux autogroups):
 *   setsid sh -c 'echo -20 > /proc/self/autogroup; exec /tmp/bench_replay'
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "replay.h"
#include "tape_build.h"

#define NIN 2
#define H 16
#define NPARAM (H * (NIN + 1) + H * (H + 1) + (H + 1))    /* 337 */
/* micrograd's nodes: a neuron of n inputs is n multiplies and n adds (+ relu) */
#define NODES_PER_SAMPLE (H * (2 * NIN + 1) + H * (2 * H + 1) + 2 * H)   /* 80 + 528 + 32 = 640 */
#define LOSS_NODES 4                                      /* -y, * score, 1 +, relu */
#define PER_ROW_NODES (NODES_PER_SAMPLE + LOSS_NODES)     /* 644 */
#define DEMO_SAMPLES 100
/* + sum of 100 losses (100 adds from 0), * 1/100, p*p and their sum (2 x 337), alpha *, + */
#define DEMO_NODES (DEMO_SAMPLES * PER_ROW_NODES + DEMO_SAMPLES + 1 + 2 * NPARAM + 2)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static uint64_t seed = 1337;
static double uniform(double lo, double hi)
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (double)(seed >> 11) / 9007199254740992.0;
}

/* The MLP on inputs x (refs), parameters p (refs, layer by layer, each
 * neuron's weights then its bias): the score node. */
static uint32_t mlp(ac_tape *t, const uint32_t *p, const uint32_t *x)
{
    uint32_t h1[H], h2[H];
    int j, at = 0;
    for (j = 0; j < H; ++j, at += NIN + 1) h1[j] = tb_neuron(t, p[at + NIN], p + at, x, NIN, 1);
    for (j = 0; j < H; ++j, at += H + 1) h2[j] = tb_neuron(t, p[at + H], p + at, h1, H, 1);
    return tb_neuron(t, p[at + H], p + at, h2, H, 0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double *t, int rounds, double nodes)
{
    qsort(t, (size_t)rounds, sizeof *t, cmp_double);
    printf("  %-44s best %8.3f ms  median %8.3f ms   %6.3f ns/node (best), %6.3f (median)\n",
           name, t[0] * 1e3, t[rounds / 2] * 1e3, t[0] / nodes * 1e9, t[rounds / 2] / nodes * 1e9);
}

static void bench_per_sample(int rounds)
{
    ac_tape t;
    uint32_t p[NPARAM], x[NIN], y, score, loss;
    int32_t *leaf_input;
    ac_program prog;
    ac_compile_stats stats;
    ac_status st;
    double params[NPARAM], *X, grad[NPARAM + NIN + 1], ysum;
    uint8_t batched[NPARAM + NIN + 1];
    static const int64_t sizes[2] = {1000, 100000};
    double *times[2][2], *cold = malloc(sizeof(double) * (size_t)rounds);
    int k, r, s, th;
    int64_t i;

    ac_tape_init(&t);
    for (k = 0; k < NPARAM; ++k) p[k] = tb_leaf(&t, params[k] = uniform(-1, 1));
    for (k = 0; k < NIN; ++k) x[k] = tb_leaf(&t, uniform(-1, 2));
    y = tb_leaf(&t, 1.0);
    score = mlp(&t, p, x);
    loss = tb_unary(&t, AC_RELU, tb_constop(&t, AC_RSUBC, tb_binary(&t, AC_MUL, y, score), 1.0));
    leaf_input = malloc(sizeof *leaf_input * (size_t)t.nleaves);
    for (k = 0; k < t.nleaves; ++k) leaf_input[k] = k;     /* params, x0, x1, y: inputs in leaf order */
    if (ac_compile(&t, &loss, 1, leaf_input, NPARAM + NIN + 1, NULL, 0, AC_PASS_ALL, &prog, &stats, &st)) {
        fprintf(stderr, "compile: %s\n", st.what);
        exit(1);
    }
    printf("per-sample loss: %lld tape nodes -> %d instructions, %d micrograd nodes per row\n",
           (long long)stats.tape_nodes, prog.n_instr, PER_ROW_NODES);
    for (k = 0; k < NPARAM + NIN + 1; ++k) batched[k] = k >= NPARAM;
    X = malloc(sizeof *X * 3 * (size_t)sizes[1]);
    for (i = 0; i < sizes[1]; ++i) {
        X[3 * i] = uniform(-1, 2);
        X[3 * i + 1] = uniform(-0.5, 1);
        X[3 * i + 2] = uniform(0, 1) < 0.5 ? -1.0 : 1.0;
    }
    for (s = 0; s < 2; ++s)
        for (th = 0; th < 2; ++th) times[s][th] = malloc(sizeof(double) * (size_t)rounds);
    for (r = 0; r < rounds; ++r) {
        for (s = 0; s < 2; ++s) {
            for (th = 0; th < 2; ++th) {
                ac_batch b;
                int reps = s == 0 ? 100 : 1, q;   /* back to back, as a training loop calls */
                double t0;
                memset(&b, 0, sizeof b);
                b.rows = sizes[s];
                b.batched = batched;
                b.x = X;
                b.shared = params;
                b.y_sum = &ysum;
                b.grad_sum = grad;
                b.nthreads = th + 1;
                b.block = getenv("BLOCK") ? atoi(getenv("BLOCK")) : 0;   /* BLOCK=n: try a block size */
                t0 = now();
                for (q = 0; q < reps; ++q)
                    if (ac_eval_batch(&prog, &b, NULL, &st)) { fprintf(stderr, "batch: %s\n", st.what); exit(1); }
                times[s][th][r] = (now() - t0) / reps;
            }
        }
    }
    {   /* one call after a pause: the worker sleeps and must be woken */
        ac_batch b;
        struct timespec pause = {0, 2000000};
        memset(&b, 0, sizeof b);
        b.rows = sizes[0]; b.batched = batched; b.x = X; b.shared = params; b.y_sum = &ysum;
        b.grad_sum = grad; b.nthreads = 2;
        for (r = 0; r < rounds; ++r) {
            double t0;
            nanosleep(&pause, NULL);
            t0 = now();
            ac_eval_batch(&prog, &b, NULL, &st);
            cold[r] = now() - t0;
        }
    }
    for (s = 0; s < 2; ++s)
        for (th = 0; th < 2; ++th) {
            char name[80];
            snprintf(name, sizeof name, "%lld rows, summed gradient, %d thread%s", (long long)sizes[s], th + 1, th ? "s" : "");
            report(name, times[s][th], rounds, (double)sizes[s] * PER_ROW_NODES);
        }
    report("1000 rows, 2 threads, one call after 2 ms idle", cold, rounds, (double)sizes[0] * PER_ROW_NODES);
    for (s = 0; s < 2; ++s)
        printf("  %lld rows: 2 threads / 1 thread speed-up %.2fx (best), %.2fx (median)\n", (long long)sizes[s],
               times[s][0][0] / times[s][1][0], times[s][0][rounds / 2] / times[s][1][rounds / 2]);
    free(cold);
    for (s = 0; s < 2; ++s)
        for (th = 0; th < 2; ++th) free(times[s][th]);
    free(X);
    free(leaf_input);
    ac_program_free(&prog);
    ac_tape_free(&t);
}

static void bench_full_batch(int rounds)
{
    ac_tape t;
    uint32_t p[NPARAM], x[NIN], losses[DEMO_SAMPLES], data_loss, reg, total, pp[2 * NPARAM];
    int32_t *leaf_input;
    ac_program prog;
    ac_workspace ws;
    ac_compile_stats stats;
    ac_status st;
    double params[NPARAM], grad[NPARAM], value, t0, compile_s, *times = malloc(sizeof(double) * (size_t)rounds);
    int k, r, reps = 50, q;

    ac_tape_init(&t);
    for (k = 0; k < NPARAM; ++k) p[k] = tb_leaf(&t, params[k] = uniform(-1, 1));
    for (k = 0; k < DEMO_SAMPLES; ++k) {
        double yk = uniform(0, 1) < 0.5 ? -1.0 : 1.0;
        uint32_t score;
        x[0] = tb_cref(&t, uniform(-1, 2));          /* the data are constants */
        x[1] = tb_cref(&t, uniform(-0.5, 1));
        score = mlp(&t, p, x);
        /* (1.0 - yi * si).relu(): yi a float */
        losses[k] = tb_unary(&t, AC_RELU, tb_constop(&t, AC_RSUBC, tb_constop(&t, AC_MULC, score, yk), 1.0));
    }
    data_loss = tb_constop(&t, AC_MULC, tb_nary(&t, AC_SUM, losses, DEMO_SAMPLES), 1.0 / DEMO_SAMPLES);
    for (k = 0; k < NPARAM; ++k) pp[2 * k] = pp[2 * k + 1] = p[k];
    reg = tb_constop(&t, AC_MULC, tb_nary(&t, AC_DOT, pp, 2 * NPARAM), 1e-4);
    total = tb_binary(&t, AC_ADD, data_loss, reg);
    leaf_input = malloc(sizeof *leaf_input * (size_t)t.nleaves);
    for (k = 0; k < t.nleaves; ++k) leaf_input[k] = k;
    t0 = now();
    if (ac_compile(&t, &total, 1, leaf_input, NPARAM, NULL, 0, AC_PASS_ALL, &prog, &stats, &st)) {
        fprintf(stderr, "compile: %s\n", st.what);
        exit(1);
    }
    compile_s = now() - t0;
    ac_workspace_init(&ws, &prog);
    printf("full-batch demo loss: %lld tape nodes, %d instructions, %d micrograd nodes; compile %.2f ms\n",
           (long long)stats.tape_nodes, prog.n_instr, DEMO_NODES, compile_s * 1e3);
    for (r = 0; r < rounds; ++r) {
        t0 = now();
        for (q = 0; q < reps; ++q) ac_eval(&prog, &ws, NULL, params, &value, grad, &st);
        times[r] = (now() - t0) / reps;
    }
    report("one replay, value and gradient", times, rounds, DEMO_NODES);
    for (r = 0; r < rounds; ++r) {
        t0 = now();
        for (q = 0; q < reps; ++q) ac_eval(&prog, &ws, NULL, params, &value, NULL, &st);
        times[r] = (now() - t0) / reps;
    }
    report("one replay, value only", times, rounds, DEMO_NODES);
    ac_workspace_free(&ws);
    ac_program_free(&prog);
    ac_tape_free(&t);
    free(leaf_input);
    free(times);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    bench_per_sample(rounds);
    bench_full_batch(rounds);
    return 0;
}

// Calibration kernels for ddlsim, loaded at run time by models/calibration/harness.py
// through cupy.RawModule (NVRTC) and compiled ahead of time by the test suite with nvcc.
// No #include: NVRTC has no standard headers, and the kernels need none.
//
// Sizes are 64-bit: the bandwidth sweep goes past 2^31 bytes.

// Streaming kernels use a grid-stride loop so that one launch configuration (a few
// waves of blocks per SM) covers every size; the host picks the grid.
extern "C" __global__ void copy_kernel(const float* __restrict__ src, float* __restrict__ dst,
                                       long long n)
{
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        dst[i] = src[i];
    }
}

// STREAM triad: a = b + scalar * c (two reads, one write per element). The _rn
// intrinsics keep the multiply and the add separately rounded (no fused multiply-add), so
// the result equals numpy's float32 arithmetic bit for bit and the harness can check it
// exactly; the kernel is memory-bound either way.
extern "C" __global__ void triad_kernel(float* __restrict__ a, const float* __restrict__ b,
                                        const float* __restrict__ c, float scalar, long long n)
{
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        a[i] = __fadd_rn(b[i], __fmul_rn(scalar, c[i]));
    }
}

// Does nothing: back-to-back launches of it time the launch path alone.
extern "C" __global__ void empty_kernel() {}

// One small kernel of a dependent chain: each launch adds one to every element, so after
// N launches the buffer has grown by exactly N (small integers are exact in fp32), which
// proves every launch of the chain ran.
extern "C" __global__ void chain_kernel(float* __restrict__ x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        x[i] += 1.0f;
    }
}

// C = A B for row-major fp32 matrices, A m x k, B k x n, C m x n. One 32 x 32 thread block
// computes one 32 x 32 tile of C, staging 32 x 32 tiles of A and B through shared memory
// so that each element loaded from DRAM is reused 32 times. Deliberately the textbook
// kernel (no register blocking, no tensor cores): it shows how far a plain CUDA kernel is
// from cuBLAS on the same GPU.
#define SGEMM_TILE 32

extern "C" __global__ void sgemm_tiled(const float* __restrict__ A, const float* __restrict__ B,
                                       float* __restrict__ C, int m, int n, int k)
{
    __shared__ float a_tile[SGEMM_TILE][SGEMM_TILE];
    // One column of padding staggers the banks of the column-wise reads of b_tile.
    __shared__ float b_tile[SGEMM_TILE][SGEMM_TILE + 1];

    int row = blockIdx.y * SGEMM_TILE + threadIdx.y;
    int col = blockIdx.x * SGEMM_TILE + threadIdx.x;
    float sum = 0.0f;

    for (int t = 0; t < k; t += SGEMM_TILE) {
        int a_col = t + threadIdx.x;
        int b_row = t + threadIdx.y;
        a_tile[threadIdx.y][threadIdx.x] =
            (row < m && a_col < k) ? A[(long long)row * k + a_col] : 0.0f;
        b_tile[threadIdx.y][threadIdx.x] =
            (b_row < k && col < n) ? B[(long long)b_row * n + col] : 0.0f;
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < SGEMM_TILE; ++i) {
            sum += a_tile[threadIdx.y][i] * b_tile[i][threadIdx.x];
        }
        __syncthreads();
    }
    if (row < m && col < n) {
        C[(long long)row * n + col] = sum;
    }
}

// Fused SGD with momentum and weight decay, PyTorch's torch.optim.SGD rule (dampening 0,
// no Nesterov):
//     d = grad + weight_decay * param
//     momentum_buf = momentum * momentum_buf + d
//     param = param - lr * momentum_buf
// Per parameter it reads param, grad and momentum_buf and writes param and momentum_buf:
// 20 bytes of traffic, the figure the harness divides by. Separately rounded operations,
// as in the triad, so that numpy's float32 reference matches exactly.
extern "C" __global__ void sgd_momentum(float* __restrict__ param, const float* __restrict__ grad,
                                        float* __restrict__ momentum_buf, float lr,
                                        float momentum, float weight_decay, long long n)
{
    long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float p = param[i];
        float d = __fadd_rn(grad[i], __fmul_rn(weight_decay, p));
        float buf = __fadd_rn(__fmul_rn(momentum, momentum_buf[i]), d);
        momentum_buf[i] = buf;
        param[i] = __fsub_rn(p, __fmul_rn(lr, buf));
    }
}

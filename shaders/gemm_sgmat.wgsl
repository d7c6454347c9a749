// Tensor-core GEMM through Dawn's subgroup matrices (`chromium_experimental_subgroup_matrix`):
// C[M, N] (f32) = A[M, K] · B[K, N], A and B f16, row-major, every side a multiple of its block (the
// launcher in src/ops/tensor-cores.ts zero-pads). One subgroup per workgroup computes TR×TC result
// matrices of CM×CN (the adapter's config), so every load, multiply and store is in subgroup-uniform
// control flow. The subgroup size is pinned to SG (the size the adapter's matrix configs are defined for),
// since a pipeline left to pick from a range can run the matrices with the wrong lane count.
// Load/store builtins use the majorness template (`subgroupMatrixLoad<T, row_major>(ptr, offset, stride)`).

const CM: u32 = {{CM}}u;  // config M: rows of a left/result matrix
const CN: u32 = {{CN}}u;  // config N: columns of a right/result matrix
const CK: u32 = {{CK}}u;  // config K
const TR: u32 = {{TR}}u;  // result matrices per subgroup along M
const TC: u32 = {{TC}}u;  // result matrices per subgroup along N
const SG: u32 = {{SG}}u;  // pinned subgroup size

alias Left = subgroup_matrix_left<f16, CK, CM>;
alias Right = subgroup_matrix_right<f16, CN, CK>;
alias Acc = subgroup_matrix_result<f32, CN, CM>;

@compute @workgroup_size(SG) @subgroup_size(SG)
fn gemm_sgmat(@builtin(workgroup_id) wid: vec3<u32>) {
  let row0 = wid.x * TR * CM;
  let col0 = wid.y * TC * CN;
  var acc: array<Acc, TR * TC>;
  for (var i = 0u; i < TR * TC; i++) { acc[i] = Acc(); }
  for (var k = 0u; k < p.K; k += CK) {
    var left: array<Left, TR>;
    for (var r = 0u; r < TR; r++) {
      left[r] = subgroupMatrixLoad<Left, row_major>(&A, (row0 + r * CM) * p.K + k, p.K);
    }
    for (var c = 0u; c < TC; c++) {
      let right = subgroupMatrixLoad<Right, row_major>(&B, k * p.N + col0 + c * CN, p.N);
      for (var r = 0u; r < TR; r++) {
        acc[r * TC + c] = subgroupMatrixMultiplyAccumulate(left[r], right, acc[r * TC + c]);
      }
    }
  }
  for (var r = 0u; r < TR; r++) {
    for (var c = 0u; c < TC; c++) {
      subgroupMatrixStore<row_major>(&C, (row0 + r * CM) * p.N + col0 + c * CN, acc[r * TC + c], p.N);
    }
  }
}

/**
 * Replica agreement: the policy that turns per-rank parameter checksums into one 0..1 number.
 */
import { TrainerError } from '../../contract/errors.js';

/**
 * Fraction of replicas whose parameter checksum equals rank 0's (rank 0 is the reference replica: its state is
 * what checkpoints and `sync-bn` take). 1 means every replica is bit-identical.
 * @param checksums - one checksum per rank, index = rank; length ≥ 1
 * @returns a ratio in (0, 1]: (number of ranks equal to rank 0) / length, rank 0 itself included
 * @throws TrainerError `ERR_INTERNAL` when `checksums` is empty
 */
export function replicaAgreementRatio(checksums: readonly (string | number | bigint)[]): number {
  if (checksums.length === 0) {
    throw new TrainerError('ERR_INTERNAL', 'replica checksums must hold at least one rank, got 0');
  }
  const reference = checksums[0];
  const agreeing = checksums.filter((c) => c === reference).length;
  return agreeing / checksums.length;
}

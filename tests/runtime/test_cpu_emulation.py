"""megatron-core's GPTModel runs on CPU ranks through the emulation, at TP=2 and PP=2,
and gives the single-rank loss and gradients."""

import torch
import torch.distributed as dist

from tests.multirank import run_ranks

SEQ, BATCH, VOCAB, MICRO_BATCHES = 8, 2, 64, 4


def _build_gpt(pg_collection, parallel):
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer import TransformerConfig

    config = TransformerConfig(
        num_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        num_query_groups=2,
        ffn_hidden_size=64,
        tensor_model_parallel_size=parallel.tensor_parallel,
        pipeline_model_parallel_size=parallel.pipeline_parallel,
        sequence_parallel=parallel.sequence_parallel,
        use_cpu_initialization=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        params_dtype=torch.float32,
        pipeline_dtype=torch.float32,
        add_bias_linear=False,
    )
    pp = pg_collection.pp
    return GPTModel(
        config=config,
        transformer_layer_spec=get_gpt_layer_local_spec(),
        vocab_size=VOCAB,
        max_sequence_length=SEQ,
        pre_process=pp.rank() == 0,
        post_process=pp.rank() == pp.size() - 1,
        share_embeddings_and_output_weights=False,
        pg_collection=pg_collection,
    )


def _global_name(name, pp_rank, layers_per_stage):
    if name.startswith("decoder.layers."):
        local = int(name.split(".")[2])
        return name.replace(f"layers.{local}.", f"layers.{local + pp_rank * layers_per_stage}.", 1)
    return name


def _full_shape(param, tp_size):
    shape = list(param.shape)
    if getattr(param, "tensor_model_parallel", False):
        shape[param.partition_dim] *= tp_size
    return shape


def _init_by_global_name(model, pgs, layers_per_stage):
    """Every parameter from a generator seeded by its global name: equal weights at any TP / PP."""
    tp_size, tp_rank = pgs.tp.size(), pgs.tp.rank()
    with torch.no_grad():
        for name, param in model.named_parameters():
            global_name = _global_name(name, pgs.pp.rank(), layers_per_stage)
            gen = torch.Generator().manual_seed(sum(map(ord, global_name)) * 7919 + len(global_name))
            full = torch.randn(_full_shape(param, tp_size), generator=gen) * 0.1
            if getattr(param, "tensor_model_parallel", False):
                full = full.chunk(tp_size, dim=param.partition_dim)[tp_rank]
            param.copy_(full)


def _batches():
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=gen) for _ in range(MICRO_BATCHES)]


def _loss_and_grads(tensor_parallel, pipeline_parallel, sequence_parallel=False):
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.pipeline_parallel.p2p_communication import P2PCommunicator

    from megatron_vl.config.parallel import ParallelConfig
    from megatron_vl.runtime.model_parallel import initialize_model_parallel, set_seed

    parallel = ParallelConfig(
        tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel, sequence_parallel=sequence_parallel
    )
    pgs = initialize_model_parallel(parallel)
    set_seed(1234, pgs)
    model = _build_gpt(pgs, parallel)
    layers_per_stage = model.config.num_layers // pipeline_parallel
    _init_by_global_name(model, pgs, layers_per_stage)
    batches = iter(_batches())
    position_ids = torch.arange(SEQ).unsqueeze(0).expand(BATCH, SEQ)
    attention_mask = torch.ones(1, 1, SEQ, SEQ, dtype=torch.bool).triu(1)

    def forward_step(data_iterator, model):
        sample = next(data_iterator)
        loss = model(sample[:, :-1], position_ids, attention_mask, labels=sample[:, 1:])

        def loss_func(per_token_loss):
            total = per_token_loss.sum()
            return total / (MICRO_BATCHES * BATCH * SEQ), torch.tensor(1), {"loss": total.detach()}

        return loss, loss_func

    schedule_kwargs = {}
    if pipeline_parallel > 1:
        schedule_kwargs["p2p_communicator"] = P2PCommunicator(pgs.pp, model.config)
    for param in model.parameters():
        param.main_grad = None
    model.config.grad_scale_func = None
    losses = get_forward_backward_func(pp_size=pipeline_parallel)(
        forward_step_func=forward_step,
        data_iterator=batches,
        model=[model],
        num_microbatches=MICRO_BATCHES,
        seq_length=SEQ,
        micro_batch_size=BATCH,
        forward_only=False,
        pg_collection=pgs,
        **schedule_kwargs,
    )
    total_loss = sum(float(entry["loss"]) for entry in losses) if losses else None
    grads = {}
    for name, param in model.named_parameters():
        grad = param.grad
        if getattr(param, "tensor_model_parallel", False) and tensor_parallel > 1:
            shards = [torch.empty_like(grad) for _ in range(tensor_parallel)]
            dist.all_gather(shards, grad.contiguous(), group=pgs.tp)
            grad = torch.cat(shards, dim=param.partition_dim)
        grads[_global_name(name, pgs.pp.rank(), layers_per_stage)] = grad
    return total_loss, grads


def _merge(results):
    loss = next(loss for loss, _ in results if loss is not None)
    grads = {}
    for _, rank_grads in results:
        grads.update(rank_grads)
    return loss, grads


def test_tp2_and_pp2_match_single_rank():
    reference_loss, reference_grads = _merge(run_ranks(_loss_and_grads, 1, 1, 1))
    for tp, pp, sp in [(2, 1, False), (1, 2, False)]:
        loss, grads = _merge(run_ranks(_loss_and_grads, tp * pp, tp, pp, sp))
        assert abs(loss - reference_loss) < 1e-4 * abs(reference_loss), (tp, pp, sp, loss, reference_loss)
        assert grads.keys() == reference_grads.keys()
        for name, grad in reference_grads.items():
            torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=1e-4, msg=f"{name} at TP={tp} PP={pp}")

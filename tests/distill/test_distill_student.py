"""The cxa076 student: weight inheritance from a GQA teacher, RepeatKV, what stage 1 trains."""

from __future__ import annotations

import pytest
import torch

from parcae_runner.distill import student as st
from parcae_runner.distill.losses import attention_l2, kl_teacher_student, top1_agreement
from parcae_runner.distill.run import stage1_losses
from parcae_runner.models.rwkv7.student import Cxa076TimeMix

transformers = pytest.importorskip("transformers")


def tiny_teacher(seed: int = 0, **overrides) -> torch.nn.Module:
    """A random Qwen2 GQA decoder: 4 query heads over 2 key/value heads of 8, q/k/v biases."""
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=64, **overrides,
    )  # fmt: skip
    teacher = transformers.Qwen2ForCausalLM(config).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@pytest.mark.parametrize("norm", ["groupnorm", "none"])
def test_student_inherits_qkvo_by_content_and_keeps_the_rest(norm):
    teacher = tiny_teacher()
    student = st.build_student(teacher, norm, rk_norm=False, kernel_impl="reference")
    for t_layer, s_layer in zip(st.layers_of(teacher), st.layers_of(student), strict=True):
        attn, tm = t_layer.self_attn, s_layer.self_attn.timemix
        for theirs, ours in (("q_proj", "receptance"), ("k_proj", "key"), ("v_proj", "value"), ("o_proj", "output")):
            assert torch.equal(getattr(tm, ours).weight, getattr(attn, theirs).weight), ours
            t_bias, s_bias = getattr(attn, theirs).bias, getattr(tm, ours).bias
            assert (t_bias is None and s_bias is None) or torch.equal(s_bias, t_bias), ours
        assert tm.key.weight.shape == (2 * 8, 32) and tm.receptance.weight.shape == (4 * 8, 32)
        for name, p in t_layer.mlp.named_parameters():
            assert torch.equal(dict(s_layer.mlp.named_parameters())[name], p)
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    # a copy, not the same tensors: training the student leaves the teacher alone
    assert student.model.embed_tokens.weight.data_ptr() != teacher.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("norm", ["groupnorm", "none"])
def test_stage1_loss_at_step_0_is_the_predicted_zero(norm):
    """With v_proj = 0 the teacher's attention outputs exactly 0 at every token (softmax-weighted zeros through
    o_proj, which has no bias); the student inherits v = 0, so its WKV state, bonus and output are exactly 0 too."""
    teacher = tiny_teacher()
    with torch.no_grad():
        for layer in st.layers_of(teacher):
            layer.self_attn.v_proj.weight.zero_()
            layer.self_attn.v_proj.bias.zero_()
    student = st.build_student(teacher, norm, rk_norm=False, kernel_impl="reference")
    tap = st.AttentionTap(teacher)
    x = torch.randint(0, 50, (2, 13))
    losses = stage1_losses(student, teacher, tap, x)
    tap.remove()
    assert len(losses) == 2 and all(loss.item() == 0.0 for loss in losses)
    assert len(tap.inputs) == 2 and tap.inputs[0].shape == (2, 13, 32)
    # and with the teacher's v back, the same inherited student is not exact: the loss is positive
    teacher = tiny_teacher()
    student = st.build_student(teacher, norm, rk_norm=False, kernel_impl="reference")
    tap = st.AttentionTap(teacher)
    assert all(loss.item() > 1e-4 for loss in stage1_losses(student, teacher, tap, x))


def test_repeat_kv_maps_query_head_to_its_group():
    tm = Cxa076TimeMix(16, (4, 2, 4), 0, "none", rk_norm=False, biases=(False, False))
    kv = torch.arange(2.0).view(1, 1, 2, 1).expand(1, 1, 2, 4)
    assert tm.repeat_kv(kv)[0, 0, :, 0].tolist() == [0.0, 0.0, 1.0, 1.0]  # HF repeat_kv: head h -> h // 2


def test_rk_norm_inherits_qwen3_q_and_k_norms():
    torch.manual_seed(0)
    config = transformers.Qwen3Config(
        vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
    )  # fmt: skip
    teacher = transformers.Qwen3ForCausalLM(config).eval()
    with torch.no_grad():
        teacher.model.layers[0].self_attn.q_norm.weight.uniform_(0.5, 1.5)
    student = st.build_student(teacher, "groupnorm", rk_norm=True, kernel_impl="reference")
    tm = st.timemixes(student)[0]
    assert torch.equal(tm.r_norm.weight, teacher.model.layers[0].self_attn.q_norm.weight)
    assert student(torch.randint(0, 40, (1, 5))).logits.shape == (1, 5, 40)


def test_stage1_freezes_everything_but_the_timemix():
    student = st.build_student(tiny_teacher(), "groupnorm", rk_norm=False, kernel_impl="reference")
    params = st.freeze_all_but_timemix(student)
    trainable = {id(p) for p in student.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in params}
    assert not student.model.embed_tokens.weight.requires_grad and not student.lm_head.weight.requires_grad


def test_losses_match_their_definitions():
    torch.manual_seed(0)
    a, b = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    want = sum(torch.dist(a[i, t], b[i, t]).item() for i in range(2) for t in range(5)) / 10 / 4.0
    assert attention_l2(a, b).item() == pytest.approx(want, rel=1e-6)
    s, t = torch.randn(3, 4, 7), torch.randn(3, 4, 7)
    p, q = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    assert kl_teacher_student(s, t, 2.0).item() == pytest.approx((p * (p / q).log()).sum(-1).mean().item(), rel=1e-5)
    assert kl_teacher_student(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert top1_agreement(t, t) == 1.0

//! The kernels as `Autodiff<Flex>` operations with their own backward steps, so that
//! training runs them too: burn's generic backward of a convolution permutes and copies its
//! operands element by element, and a GroupNorm built from generic ops records a dozen
//! broadcasting steps.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::tensor::ops::FloatTensor;
use burn_flex::{Flex, FlexTensor};

use super::conv::{self, ConvShape};
use super::layer_norm::{self, LayerNormShape};
use super::norm::{self, GroupNormShape};
use super::{add as add_kernel, entropy, gelu as gelu_kernel, upsample};
use super::{f32_flex, AutodiffFlex};

type Tensor = FloatTensor<AutodiffFlex>;

/// The contiguous f32 values of a tensor's primitive (a copy only when it is a view).
fn values(t: &Tensor) -> FlexTensor {
    t.primitive.to_contiguous()
}

/// The gradient flowing into the operation's output, contiguous.
fn output_grad<S, const N: usize>(grads: &mut Gradients, ops: &Ops<S, N>) -> FlexTensor {
    grads.consume::<Flex>(&ops.node).to_contiguous()
}

/// The parents' ids, `None` for those that need no gradient.
fn parent_ids<S, const N: usize>(ops: &Ops<S, N>) -> [Option<NodeId>; N] {
    ops.parents.each_ref().map(|p| p.as_ref().map(|node| node.id))
}

#[derive(Debug)]
struct GroupNormBackward;

impl Backward<Flex, 3> for GroupNormBackward {
    /// Input, weight, bias.
    type State = ([FlexTensor; 3], GroupNormShape);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = output_grad(grads, &ops);
        let [node_x, node_weight, node_bias] = parent_ids(&ops);
        let ([x, weight, bias], shape) = ops.state;
        let (grad_x, grad_weight, grad_bias) =
            norm::backward(x.storage(), weight.storage(), bias.storage(), grad.storage(), &shape);
        register(grads, [(node_x, grad_x, &x), (node_weight, grad_weight, &weight), (node_bias, grad_bias, &bias)]);
    }
}

/// Registers each gradient (shaped as its tensor) for the parents that need one.
fn register<const N: usize>(grads: &mut Gradients, gradients: [(Option<NodeId>, Vec<f32>, &FlexTensor); N]) {
    for (node, grad, like) in gradients {
        if let Some(node) = node {
            grads.register::<Flex>(node, f32_flex(grad, like.layout().shape()));
        }
    }
}

pub(super) fn group_norm(x: Tensor, weight: Tensor, bias: Tensor, shape: GroupNormShape) -> Tensor {
    let state = [values(&x), values(&weight), values(&bias)];
    let [xv, wv, bv] = &state;
    let out = f32_flex(norm::forward(xv.storage(), wv.storage(), bv.storage(), &shape), xv.layout().shape());
    match GroupNormBackward.prepare::<NoCheckpointing>([x.node, weight.node, bias.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((state, shape), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    /// Input and weight (the bias gradient needs neither).
    type State = ([FlexTensor; 2], LayerNormShape);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = output_grad(grads, &ops);
        let [node_x, node_weight, node_bias] = parent_ids(&ops);
        let ([x, weight], shape) = ops.state;
        let (grad_x, grad_weight, grad_bias) =
            layer_norm::backward(x.storage(), weight.storage(), grad.storage(), &shape);
        register(grads, [(node_x, grad_x, &x), (node_weight, grad_weight, &weight), (node_bias, grad_bias, &weight)]);
    }
}

pub(super) fn layer_norm(x: Tensor, weight: Tensor, bias: Tensor, shape: LayerNormShape) -> Tensor {
    let state = [values(&x), values(&weight)];
    let bias_values = values(&bias);
    let [xv, wv] = &state;
    let out = layer_norm::forward(xv.storage(), wv.storage(), bias_values.storage(), &shape);
    let out = f32_flex(out, xv.layout().shape());
    match LayerNormBackward.prepare::<NoCheckpointing>([x.node, weight.node, bias.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((state, shape), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = output_grad(grads, &ops);
        let [node] = parent_ids(&ops);
        if let Some(node) = node {
            let x = ops.state;
            grads.register::<Flex>(
                node,
                f32_flex(gelu_kernel::backward(x.storage(), grad.storage()), x.layout().shape()),
            );
        }
    }
}

pub(super) fn gelu(x: Tensor) -> Tensor {
    let values = values(&x);
    let out = f32_flex(gelu_kernel::forward(values.storage()), values.layout().shape());
    match GeluBackward.prepare::<NoCheckpointing>([x.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(values, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[derive(Debug)]
struct ConvBackward;

/// Input and weight; the bias gradient needs neither.
type ConvState = ([FlexTensor; 2], ConvShape);

impl ConvBackward {
    fn input_and_weight(state: ConvState, grad: &FlexTensor, grads: &mut Gradients, nodes: [Option<NodeId>; 2]) {
        let ([x, weight], shape) = state;
        let [node_x, node_weight] = nodes;
        if let Some(node) = node_x {
            let grad_x = conv::backward_input(weight.storage(), grad.storage(), &shape);
            grads.register::<Flex>(node, f32_flex(grad_x, x.layout().shape()));
        }
        if let Some(node) = node_weight {
            let grad_weight = conv::backward_weight(x.storage(), grad.storage(), &shape);
            grads.register::<Flex>(node, f32_flex(grad_weight, weight.layout().shape()));
        }
    }
}

impl Backward<Flex, 2> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = output_grad(grads, &ops);
        let nodes = parent_ids(&ops);
        Self::input_and_weight(ops.state, &grad, grads, nodes);
    }
}

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = output_grad(grads, &ops);
        let shape = ops.state.1;
        let [node_x, node_weight, node_bias] = parent_ids(&ops);
        if let Some(node) = node_bias {
            grads.register::<Flex>(node, f32_flex(conv::backward_bias(grad.storage(), &shape), &[shape.co]));
        }
        Self::input_and_weight(ops.state, &grad, grads, [node_x, node_weight]);
    }
}

pub(super) fn conv2d(x: Tensor, weight: Tensor, bias: Option<Tensor>, shape: ConvShape) -> Tensor {
    let state = [values(&x), values(&weight)];
    let bias_values = bias.as_ref().map(values);
    let [xv, wv] = &state;
    let out = conv::forward(xv.storage(), wv.storage(), bias_values.as_ref().map(|b| b.storage()), &shape);
    let out = f32_flex(out, &shape.output_dims());
    match bias {
        Some(bias) => {
            let prep = Backward::<Flex, 3>::prepare::<NoCheckpointing>(ConvBackward, [x.node, weight.node, bias.node]);
            match prep.compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish((state, shape), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            }
        }
        None => {
            let prep = Backward::<Flex, 2>::prepare::<NoCheckpointing>(ConvBackward, [x.node, weight.node]);
            match prep.compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish((state, shape), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            }
        }
    }
}

#[derive(Debug)]
struct EntropyBackward;

impl Backward<Flex, 1> for EntropyBackward {
    /// The affinities and the number of codes.
    type State = (FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = output_grad(grads, &ops);
        let [node] = parent_ids(&ops);
        let (affinity, codes) = ops.state;
        if let Some(node) = node {
            let grad_affinity = entropy::backward(affinity.storage(), grad.storage(), codes);
            grads.register::<Flex>(node, f32_flex(grad_affinity, affinity.layout().shape()));
        }
    }
}

pub(super) fn softmax_entropy(affinity: Tensor, codes: usize) -> Tensor {
    let values = values(&affinity);
    let out = f32_flex(entropy::forward(values.storage(), codes), &[codes + 1]);
    match EntropyBackward.prepare::<NoCheckpointing>([affinity.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((values, codes), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[derive(Debug)]
struct UpsampleBackward;

impl Backward<Flex, 1> for UpsampleBackward {
    /// The input's shape `[b, c, h, w]`.
    type State = [usize; 4];

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = output_grad(grads, &ops);
        let [node] = parent_ids(&ops);
        let shape = ops.state;
        if let Some(node) = node {
            let grad_x = upsample::backward(grad.storage(), shape[2], shape[3]);
            grads.register::<Flex>(node, f32_flex(grad_x, &shape));
        }
    }
}

pub(super) fn upsample_nearest2x(x: Tensor) -> Tensor {
    let values = values(&x);
    let [b, c, h, w]: [usize; 4] = values.layout().shape().dims();
    let out = f32_flex(upsample::forward(values.storage(), h, w), &[b, c, 2 * h, 2 * w]);
    match UpsampleBackward.prepare::<NoCheckpointing>([x.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish([b, c, h, w], out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[derive(Debug)]
struct AddBackward;

impl Backward<Flex, 2> for AddBackward {
    type State = ();

    /// Both parents get the output's gradient itself (one buffer, shared).
    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = output_grad(grads, &ops);
        let [node_a, node_b] = parent_ids(&ops);
        if let Some(node) = node_a {
            grads.register::<Flex>(node, grad.clone());
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node, grad);
        }
    }
}

pub(super) fn add(a: Tensor, b: Tensor) -> Tensor {
    // `a`'s values by value, so that the sum can take over its buffer (see `add`).
    let (a_values, a_node) = (a.primitive, a.node);
    let out = add_kernel::forward(a_values, &b.primitive);
    AddBackward.prepare::<NoCheckpointing>([a_node, b.node]).compute_bound().stateless(out)
}

"""The 18 challenges of the alignment and safety agenda, as data.

Ids, titles and groups follow the paper named in `SOURCE`. Summaries and research
directions are assay's own formulation, written for this project: they are not
quotations from the paper. Studies that address a challenge live in the study
registry and are not stored here.
"""

from dataclasses import asdict, dataclass

from assay.errors import AssayError

SOURCE = (
    "Anwar et al. 2024, Foundational Challenges in Assuring Alignment and Safety of "
    "Large Language Models, arXiv:2404.09932"
)

GROUPS = {
    "2": "Scientific Understanding of LLMs",
    "3": "Development and Deployment Methods",
    "4": "Sociotechnical Challenges",
}


@dataclass(frozen=True)
class Challenge:
    id: str                     # section number in the paper, e.g. "3.6"
    title: str                  # the paper's section title, verbatim
    group: str                  # key into GROUPS: "2", "3" or "4"
    summary: str                # 2-4 sentences, assay's own wording
    directions: tuple[str, ...]  # 4-7 runnable questions or tasks, assay's own wording


_CATALOG: tuple[Challenge, ...] = (
    # ---- 2: Scientific Understanding of LLMs -------------------------------------------
    Challenge(
        id="2.1",
        title="In-Context Learning (ICL) Is Black-Box",
        group="2",
        summary=(
            "Large language models can pick up a new task from examples or instructions "
            "placed in the prompt, with no change to their weights. The computation behind "
            "this is not understood: rival explanations range from retrieval of memorised "
            "patterns to an optimiser learned inside the forward pass, and none has been "
            "confirmed for full-size models. Since a prompt alone can steer behaviour, this "
            "opacity makes prompted behaviour hard to predict or audit."
        ),
        directions=(
            "Train a small transformer on in-context linear regression and compare its error, "
            "as the number of examples grows, with least-squares and nearest-neighbour "
            "baselines.",
            "Test whether the pattern-matching and inner-optimisation accounts of ICL can "
            "each explain learning from feedback, explanations and worked reasoning, not "
            "only from input-output pairs.",
            "Track when induction heads form during training and check whether their arrival "
            "coincides with the drop in loss on late tokens of the context.",
            "Vary the diversity of tasks seen in pretraining and locate the point where "
            "in-context predictions stop mirroring the training-task prior and start "
            "generalising to unseen tasks.",
            "Measure how far instructions or demonstrations in the context can override "
            "behaviour instilled by finetuning, safety behaviour included.",
            "Ablate architecture and training choices such as depth, attention type and data "
            "ordering, and record which of them change in-context learning ability.",
        ),
    ),
    Challenge(
        id="2.2",
        title="Capabilities Are Difficult to Estimate and Understand",
        group="2",
        summary=(
            "What an LLM can and cannot do is distributed differently from human skills, so "
            "intuitions borrowed from testing people often mislead. There is no agreed, "
            "measurable notion of a capability, benchmarks saturate quickly, and generality "
            "is expensive to estimate. Evaluations also tend to leave out the tools, "
            "prompting strategies and scaffolds that can lift performance once a model is "
            "deployed."
        ),
        directions=(
            "Search systematically for tasks where a model's success or failure contradicts "
            "what a person with the same test score would show.",
            "Propose an operational definition of a capability and check whether it predicts "
            "performance on held-out tasks that should require that capability.",
            "Score a set of models on many benchmarks and find how many latent factors explain "
            "the resulting model-by-task matrix.",
            "Estimate how much measured accuracy rises when self-consistency voting, tool use "
            "or an agent scaffold is added to an evaluation.",
            "Design an evaluation that estimates generality from a small, well-chosen sample "
            "of tasks, and compare its estimate with exhaustive testing.",
        ),
    ),
    Challenge(
        id="2.3",
        title="Effects of Scale on Capabilities Are Not Well-Characterized",
        group="2",
        summary=(
            "Adding parameters, data or compute lowers pretraining loss along a regular, "
            "forecastable curve, but nobody can yet say why the curve has that shape. The trend "
            "reveals little about when a particular downstream skill, dangerous ones included, "
            "will appear, and it is disputed whether sudden jumps in ability are real or a "
            "product of the chosen metric. Without task-level forecasts it is hard to anticipate "
            "what the next larger model will be able to do."
        ),
        directions=(
            "Fit a power law of loss against parameter count over a ladder of small models and "
            "measure how well it extrapolates to the largest one.",
            "Score the same outputs with exact match and with a continuous metric across "
            "model sizes, and compare how abrupt each curve looks.",
            "Follow hidden progress measures during grokking on modular arithmetic and check "
            "whether they move before test accuracy jumps.",
            "Compare the internal representations of models of different sizes to see which "
            "features sharpen, appear or vanish with scale.",
            "Develop a cheap procedure that forecasts one task's performance at larger scale "
            "from small-model runs, and test its forecasts.",
            "Identify tasks on which more scale does not help, and determine whether data, "
            "compute or architecture is the binding limit.",
        ),
    ),
    Challenge(
        id="2.4",
        title="Qualitative Understanding of Reasoning Capabilities Is Lacking",
        group="2",
        summary=(
            "We do not know whether LLMs reason systematically or lean on shortcuts that fail "
            "outside their training distribution. Little is known about the internal "
            "mechanisms of multi-step reasoning, about inductive and abductive reasoning, or "
            "about which stages of training give rise to reasoning skill. Theoretical limits on "
            "what transformers can compute are only partly mapped, which makes it hard to "
            "judge whether a model could plan harmful actions or verify its own answers."
        ),
        directions=(
            "Train small transformers on arithmetic with and without written intermediate "
            "steps, and compare accuracy on operands longer than any seen in training.",
            "Measure proof accuracy on synthetic logic problems as proof depth and the number "
            "of distracting valid steps increase.",
            "Locate the components that carry intermediate results in a multi-step task, and "
            "confirm with ablations that the model causally relies on them.",
            "Measure inductive and abductive reasoning separately from deduction, and check "
            "whether the three improve alike with scale.",
            "Vary the format, amount and ordering of training data and find which choices "
            "decide when a reasoning skill is learned.",
            "Probe a shallow transformer on automaton or flip-flop tasks for rare errors on "
            "long or sparse sequences that expose a shortcut solution.",
        ),
    ),
    Challenge(
        id="2.5",
        title="Agentic LLMs Pose Novel Risks",
        group="2",
        summary=(
            "Once an LLM is given tools, memory, planning prompts or extra training, it can act "
            "in the world over long sequences of steps with little human supervision. This "
            "autonomy brings alignment problems that chat use does not: goals stated in "
            "natural language are underspecified, pursuing a goal can reward harmful "
            "instrumental behaviour, and agents may keep learning after deployment. Overseeing "
            "such agents is hard, and the affordances they receive set how much damage they "
            "can do."
        ),
        directions=(
            "Measure how often a reward-maximising agent causes irreversible side effects in a "
            "gridworld, and whether a reachability penalty reduces them.",
            "Train an agent whose goal always sits in one place, move the goal at test time, "
            "and record how often the agent heads for the old location.",
            "Vary agent capacity and training length under a misspecified proxy reward, and "
            "chart how far the proxy score drifts from the intended objective.",
            "Build a monitor that flags unsafe actions in long agent trajectories and measure "
            "its recall against deliberately injected violations.",
            "Give an agent progressively stronger affordances, such as code execution or "
            "network access, and record which new failure modes each one unlocks.",
            "Study how an agent with persistent memory changes its behaviour over many "
            "episodes, and whether its safety properties drift.",
        ),
    ),
    Challenge(
        id="2.6",
        title="Multi-Agent Safety Is Not Assured by Single-Agent Safety",
        group="2",
        summary=(
            "Agents that are each safe in isolation can still produce unsafe outcomes when they "
            "interact. Because many deployed agents share a handful of base models, their "
            "failures may be correlated rather than independent. Groups of agents might "
            "coordinate, develop abilities no single member has, or collude through covert "
            "channels, and it is unclear how much multi-agent reinforcement learning theory "
            "carries over to LLM agents."
        ),
        directions=(
            "Let independent learning agents set prices in a repeated market and measure how "
            "far their prices settle above the competitive level without any communication.",
            "Measure cooperation between learning agents in an iterated social dilemma as "
            "memory length and exploration settings vary.",
            "Finetune several classifiers from one shared base and from different bases, and "
            "compare how often they fail on the same inputs with the rate independence "
            "predicts.",
            "Test whether two models can pass information through a hidden encoding that a "
            "third model watching them fails to notice.",
            "Pit assistants trained for single-user helpfulness against each other in "
            "negotiation games and record whether they exploit or are exploited.",
        ),
    ),
    Challenge(
        id="2.7",
        title="Safety-Performance Trade-offs Are Poorly Understood",
        group="2",
        summary=(
            "Safety interventions such as refusal training, output filtering, adversarial "
            "robustness and privacy protection often seem to make a model less useful, but how "
            "large that loss is and whether it is unavoidable are not well known. Many safety "
            "metrics rise and fall with general capability, so an apparent safety gain may "
            "only reflect a stronger model. Clearer metrics and careful maps of the trade-off "
            "frontier are needed to separate fundamental tensions from limits of present "
            "methods."
        ),
        directions=(
            "Adversarially train small classifiers at several perturbation budgets and plot "
            "clean accuracy against robust accuracy.",
            "Train with differentially private gradients at several privacy budgets and record "
            "how test accuracy falls as the budget tightens.",
            "Measure refusal rates on clearly safe and clearly unsafe prompts for models with "
            "different amounts of safety tuning, and place each model on a "
            "helpfulness-safety plane.",
            "Check how strongly a proposed safety metric correlates with general capability "
            "across many models, and adjust the metric until that correlation is gone.",
            "Look for a method that moves a model beyond the current safety-performance "
            "frontier, as evidence that a given trade-off is not fundamental.",
        ),
    ),
    # ---- 3: Development and Deployment Methods -----------------------------------------
    Challenge(
        id="3.1",
        title="Pretraining Produces Misaligned Models",
        group="3",
        summary=(
            "Text scraped from the web carries toxic, biased, private and hazardous content, "
            "and a model learns from all of it long before alignment training starts. "
            "Finetuning afterwards may hide these tendencies without erasing them. Filters for "
            "such content are crude, corpora of this size are hard to inspect, and linking a "
            "behaviour to the documents responsible is unreliable, so it is worth asking "
            "whether safety can be trained in from the first token."
        ),
        directions=(
            "Pretrain a tiny model on a corpus with tagged undesirable documents, and compare "
            "plain training, filtering and conditioning on control tokens by rate of "
            "undesirable output and held-out loss.",
            "Insert canary strings into a training corpus at varying duplication counts and "
            "measure how extraction rate grows with duplicates and model size.",
            "Compare influence-function scores with true leave-one-out retraining for models "
            "of increasing depth.",
            "Measure what a toxicity filter removes disproportionately, such as dialects or "
            "text about particular groups, and what harmful text it lets through.",
            "Build an audit that estimates from a small sample how much private, hazardous or "
            "benchmark-contaminating text a corpus holds.",
        ),
    ),
    Challenge(
        id="3.2",
        title="Finetuning Methods Struggle to Assure Alignment and Safety",
        group="3",
        summary=(
            "Supervised instruction tuning, RLHF and adversarial training appear to reshape "
            "surface behaviour more than underlying knowledge or ability. Suppressed "
            "capabilities can return after a little further training, and finetuning sometimes "
            "generalises in unexpected directions. Because training acts only on outputs, it "
            "can reward looking aligned rather than being aligned, and tools for precise "
            "editing or unlearning are still immature."
        ),
        directions=(
            "Finetune a small model to suppress a procedural skill, then compare how many steps "
            "of further training bring it back with how many it takes to learn it from nothing.",
            "Finetune a safety-tuned model on a few harmful examples, and separately on benign "
            "data, and measure how its refusal rate changes.",
            "Apply an unlearning method to synthetic facts, finetune on half of the forgotten "
            "set, and test how much of the other half comes back.",
            "Probe internal representations before and after finetuning to see whether an "
            "unwanted concept is removed or merely no longer expressed.",
            "Finetune on one narrow behaviour and search for unintended changes in responses "
            "to unrelated prompts.",
            "Compare editing, steering and unlearning on how precisely each changes a targeted "
            "behaviour and how much it disturbs everything else.",
        ),
    ),
    Challenge(
        id="3.3",
        title="LLM Evaluations Are Confounded and Biased",
        group="3",
        summary=(
            "Evaluation results shift with prompt wording and formatting, are inflated when "
            "test items leak into training or when models are tuned toward a benchmark, and are "
            "skewed when other LLMs or crowdworkers serve as judges. These confounds weaken "
            "claims about capability and safety alike. As models approach the skill of the "
            "people evaluating them, scalable oversight becomes necessary, and no method for "
            "it is yet proven."
        ),
        directions=(
            "Score models under about twenty equivalent prompt formats and report the spread "
            "between the best and the worst format.",
            "Inject test items into pretraining data at different repeat counts, and measure "
            "both the score inflation and how well a likelihood-based test detects it.",
            "Swap the order of the two candidate answers shown to an LLM judge and measure how "
            "often its verdict flips.",
            "Estimate agreement between crowdworkers and experts on a safety labelling task and "
            "find the kinds of item where the crowd goes wrong.",
            "Replicate a debate experiment in which two competing debaters help a judge who "
            "sees little evidence, and measure the judge's accuracy gain.",
            "Assess whether finetuning on benchmark-style data raises scores without improving "
            "performance on a freshly written version of the same task.",
        ),
    ),
    Challenge(
        id="3.4",
        title=(
            "Tools for Interpreting or Explaining LLM Behavior Are Absent or Lack Faithfulness"
        ),
        group="3",
        summary=(
            "Most interpretability tools presuppose something about the model, for instance "
            "that features are directions, that a neuron stands for a single concept, or that "
            "attributions add up, and these premises can fail without current evaluations "
            "noticing. Nothing pushes models to be understandable, and their "
            "internal concepts need not match human ones. Since the true computation is "
            "unknown, faithfulness is hard to verify, and natural-language explanations, chain "
            "of thought included, can sound convincing without reflecting what drove the "
            "answer."
        ),
        directions=(
            "Train a toy autoencoder with more features than dimensions and map when features "
            "enter superposition as input sparsity rises.",
            "Fit sparse autoencoders to activations with known ground-truth features and "
            "measure how closely the learned dictionary recovers them.",
            "Randomise a model's weights and check whether a saliency method still produces "
            "nearly the same attribution maps.",
            "Bias few-shot prompts toward one answer and count how often chain-of-thought "
            "explanations mention the bias that changed the answer.",
            "Steer a model along a direction found by a probe and test whether the behaviour "
            "change matches what the interpretation predicts.",
            "Repeat a feature or circuit analysis on a different dataset and report how much of "
            "the interpretation survives.",
        ),
    ),
    Challenge(
        id="3.5",
        title="Jailbreaks and Prompt Injections Threaten Security of LLMs",
        group="3",
        summary=(
            "Handwritten or optimised adversarial prompts routinely get past safety training, "
            "and instructions planted in retrieved documents or tool output can hijack an LLM "
            "application. Evaluations are not standardised, strong white-box attacks are "
            "costly, and there is no settled account of why attacks succeed. Extra input "
            "modalities widen the attack surface, models cannot reliably separate trusted "
            "instructions from untrusted data, and most defences are filters wrapped around "
            "the model."
        ),
        directions=(
            "Run a gradient-guided suffix search against a small chat model, and report attack "
            "success against optimisation steps and how well the suffixes carry over to another "
            "model.",
            "Test whether a perplexity filter separates optimised adversarial prompts from "
            "benign ones, and whether fluent attacks slip past it.",
            "Measure prompt-injection success across application templates with no defence, "
            "with delimiters, and with the instructions repeated after the data.",
            "Search for a short universal trigger that lowers a small classifier's accuracy on "
            "one class, and check how well it transfers to other models.",
            "Train a model to stop and recover partway through a harmful response, and measure "
            "how often it does so under attack.",
            "Evaluate whether marking system, user and data text with distinct roles stops a "
            "model from obeying instructions embedded in data.",
        ),
    ),
    Challenge(
        id="3.6",
        title="Vulnerability to Poisoning and Backdoors Is Poorly Understood",
        group="3",
        summary=(
            "An adversary who writes even a small fraction of the pretraining, instruction or "
            "preference data could hide a behaviour that switches on only when a trigger "
            "appears. Little is known about how the danger varies between training stages, "
            "with model size, or with a model's capacity to join up facts it met in separate "
            "documents. Planted behaviours can persist through later safety training, and "
            "there is no dependable method for detecting or deleting them in large models."
        ),
        directions=(
            "Add a small pixel trigger to a fraction of image training data and measure attack "
            "success and clean accuracy as the poison rate varies.",
            "Poison instruction-tuning data with a trigger phrase and chart attack success "
            "against the number of poisoned examples for several model sizes.",
            "Plant a trigger-conditioned behaviour, apply clean safety finetuning, and track "
            "whether the behaviour survives as that training continues.",
            "Rank training examples by their projection on the top singular direction of the "
            "learned representations and measure how many poisoned ones are caught.",
            "Poison the same behaviour at pretraining, instruction tuning and preference tuning "
            "to see which stage needs the least data.",
        ),
    ),
    # ---- 4: Sociotechnical Challenges --------------------------------------------------
    Challenge(
        id="4.1",
        title="Values to Be Encoded within LLMs Are Not Clear",
        group="4",
        summary=(
            "Aligning a model forces a choice about whose values it should reflect, who "
            "decides, and how clashes between people or between values get settled. The values "
            "a model ends up with can hinge on chance, such as which annotators were hired or "
            "which lab built it. There are no robust methods for finding out what values a "
            "model actually holds, and some doubt that value alignment is the right frame at "
            "all."
        ),
        directions=(
            "Compare a model's answers to opinion surveys with the response distributions of "
            "different demographic groups, before and after preference tuning.",
            "Train a reward model on synthetic preferences from groups that disagree and check "
            "whose ranking the learned reward ends up following.",
            "Ask moral questions in several equivalent phrasings and measure how consistent a "
            "model's answers are for clear and for ambiguous dilemmas.",
            "Retrain a reward model with a different annotator pool and measure how far the "
            "resulting policy's stated values shift.",
            "Design an evaluation of encoded values that holds up under paraphrase and "
            "role-play, and compare it with asking the model directly.",
        ),
    ),
    Challenge(
        id="4.2",
        title="Dual-Use Capabilities Enable Malicious Use and Misuse of LLMs",
        group="4",
        summary=(
            "Skills that serve legitimate users, such as fluent writing, coding and scientific "
            "knowledge, serve attackers equally well, whether for disinformation, cyber "
            "attacks, surveillance, censorship, weapons or biological and chemical hazards. How "
            "much a model adds to what an attacker could already do with existing resources is "
            "hard to estimate. Defensive measures such as detecting, watermarking and "
            "attributing machine-written text remain weak."
        ),
        directions=(
            "Implement a logit-bias watermark and measure the detection rate against text "
            "length and against the fraction of tokens an attacker replaces.",
            "Measure how well a zero-shot detector separates human from model text, and how far "
            "paraphrasing lowers its accuracy.",
            "Evaluate models on a multiple-choice proxy for hazardous knowledge across sizes "
            "and after an unlearning intervention.",
            "Design a controlled uplift study comparing task success with and without model "
            "help on a benign stand-in for a harmful task.",
            "Measure how persuasive model-written arguments are compared with human-written "
            "ones, using a panel of judges or a judge model.",
        ),
    ),
    Challenge(
        id="4.3",
        title="LLM-Systems Can Be Untrustworthy",
        group="4",
        summary=(
            "Systems built on LLMs can stereotype or overlook groups of people, work well for "
            "some languages, topics and users but poorly for others, and pass private "
            "information into settings where it does not belong. Fluent, confident output "
            "encourages people to rely on it more than they should. Trustworthiness therefore "
            "calls for bias, reliability, calibration and privacy to be assessed together rather "
            "than average accuracy alone."
        ),
        directions=(
            "Measure truthfulness on questions built around common misconceptions across a "
            "family of model sizes, and report the direction of the trend.",
            "Compare how much a model relies on stereotypes in ambiguous and in disambiguated "
            "versions of the same bias questions.",
            "Compute calibration error and Brier score on multiple-choice questions across "
            "model sizes and answer formats.",
            "Train a tiny model on synthetic records with personal details and measure how much "
            "can be extracted with and without differentially private training.",
            "Measure accuracy gaps across languages or dialects on a translated benchmark and "
            "relate them to each language's share of the training data.",
        ),
    ),
    Challenge(
        id="4.4",
        title="Socioeconomic Impacts of LLM May Be Highly Disruptive",
        group="4",
        summary=(
            "LLMs could automate or reorganise a large share of cognitive work. The gains may "
            "flow mainly to owners of capital and to leading firms and countries, widening "
            "inequality, and education may have to rethink how skills are taught and "
            "certified. The size and speed of these effects are very uncertain, which makes "
            "planning for retraining, redistribution and school reform difficult."
        ),
        directions=(
            "Generate texts from a base model and its instruction-tuned version for the same "
            "prompts and compare their lexical and semantic diversity.",
            "Recompute the share of workers whose tasks are substantially exposed to LLMs from "
            "released occupational task-exposure labels.",
            "Retrain a tiny model on its own samples for several generations and track how its "
            "perplexity on the first-generation data and its coverage of rare tokens degrade.",
            "Compare a model's quality across high- and low-resource languages as a proxy for "
            "which economies stand to benefit from it.",
        ),
    ),
    Challenge(
        id="4.5",
        title="LLM Governance Is Lacking",
        group="4",
        summary=(
            "Governing LLMs means acting amid deep uncertainty about what they can do, with "
            "institutions that move slower than the technology, a few firms holding outsized "
            "influence, and risks that cross borders. Unsettled questions include who is liable "
            "when harm occurs, whether rules aimed at specific uses suffice, what obligations "
            "should attach to building and releasing models, how training data should be "
            "governed, and whether thresholds based on training compute will still mean "
            "anything as algorithms become more efficient."
        ),
        directions=(
            "Train tiny models under several fixed compute budgets and show how much loss "
            "varies with the split between model size and data at equal compute.",
            "Measure the spread of benchmark scores across training seeds and compare it with "
            "the score gaps used to rank neighbouring models.",
            "Fit a log-linear trend to a public dataset of training compute for notable models "
            "and estimate its doubling time.",
            "Estimate how quickly algorithmic progress lowers the compute needed to reach a "
            "fixed capability, and what that implies for compute-based thresholds.",
            "Write a model-level obligation as a concrete test and check whether two "
            "independent evaluators reach the same verdict on the same model.",
        ),
    ),
)

_BY_ID = {ch.id: ch for ch in _CATALOG}


def challenges() -> list[Challenge]:
    """All 18 challenges, in id order."""
    return sorted(_CATALOG, key=lambda ch: tuple(int(part) for part in ch.id.split(".")))


def challenge(id: str) -> Challenge:
    """The challenge with this id, e.g. "3.6"; an unknown id raises AssayError."""
    found = _BY_ID.get(str(id).strip())
    if found is None:
        valid = ", ".join(ch.id for ch in challenges())
        raise AssayError(f"unknown challenge {id!r}: choose one of {valid}")
    return found


def group_of(id: str) -> str:
    """The name of the group that the challenge with this id belongs to."""
    return GROUPS[challenge(id).group]


def to_dict(ch: Challenge) -> dict:
    """A JSON-ready dict of the challenge's fields (directions as a list)."""
    data = asdict(ch)
    data["directions"] = list(ch.directions)
    return data

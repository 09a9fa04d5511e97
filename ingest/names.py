"""Random run names in MLflow's style (`luminous-perch-218`) for runs created without one."""

from __future__ import annotations

import random

_ADJECTIVES = (
    "abundant able adaptable amazing ambitious agreeable bald beautiful bemused big bold brawny "
    "bright burly capable carefree casual classy clean clever colorful crawling dapper debonair "
    "delicate dashing defiant delightful receptive enchanting entertaining fearless funny gaudy "
    "gentle gifted glamorous grandiose gregarious handsome hilarious honorable illustrious incongruous "
    "indecisive industrious intelligent inquisitive invincible judicious kindly languid learned "
    "legendary likeable loud luminous luxuriant lyrical magnificent marvelous masked melodic merciful "
    "mercurial monumental mysterious nebulous nervous nimble nosy omniscient orderly overjoyed "
    "peaceful painted persistent placid polite popular powerful puzzled rambunctious rare rebellious "
    "redolent resilient righteous rogue rumbling salty sassy secretive selective shivering shy silent "
    "silky skillful sneaky spiffy spiteful stately stylish suave sincere smiling tasteful thoughtful "
    "thundering traveling treasured trusting unequaled upbeat unique unruly valuable victorious "
    "vaunted vibrant vindictive welcoming wistful worried youthful zealous"
).split()

_NOUNS = (
    "ant ape asp auk bass bat bear bee bird boar bug calf carp cat cod colt conch cow crab crane "
    "croc crow cub deer doe dog dolphin donkey dove duck eel elk fawn finch fish flea fly foal fowl "
    "fox frog gnat gnu goat goose grouse grub gull hare hawk hen hog hound jay kit kite koi lamb "
    "lark loon lynx mare midge mink mole moose moth mouse mule newt owl ox panda penguin perch pig "
    "pug quail ram rat ray robin roo rook seal shad shark sheep shrew skink skunk sloth slug snail "
    "snake sow squid stag steed stoat stork swan tern toad trout turtle vole wasp whale wolf worm wren yak zebra"
).split()


def random_run_name(rng: random.Random | None = None) -> str:
    rng = rng or random.Random()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randint(0, 999)}"

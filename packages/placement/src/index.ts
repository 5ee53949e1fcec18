// @vmesh/placement: Cost function and election of clone placement with reservations
export {}
